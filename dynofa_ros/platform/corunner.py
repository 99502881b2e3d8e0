"""A real co-running CPU load for the demo and the benchmarks: N worker processes, each busy for `duty` of
every `period_s`, for at most `duration_s`.

It replaces a fabricated "load spike" message: the platform monitor measures this load like any other
process, and the workload really competes with it for the cores. Two ways to put it under the emulated
DVFS / cgroup path (`emulation.py`):
- `cap` confines the workers themselves to that share of their CPUs (a CFS quota in a cgroup of their own);
- the frequency actuator's emulation backend with `emulation_match: dynofa_ros.platform.corunner` throttles
  them with the workload, as a lower clock slows every process on a real board.

Run: `python -m dynofa_ros.platform.corunner --workers 2 --duty 0.8 --duration 30 [--cap 0.5]`, or from
Python with `CoRunner(...)` (a child process group, stopped on exit).
"""
from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from types import TracebackType

import psutil

from dynofa_ros.platform.emulation import CgroupCpuBandwidth, release_stale_groups
from dynofa_ros.process_launch import stop_process_group

MAX_WORKERS = 256
MAX_DURATION_S = 24 * 3600.0
PERIOD_RANGE_S = (0.001, 10.0)
MODULE = "dynofa_ros.platform.corunner"   # also what the actuator's emulation_match can look for
GROUP_PREFIX = "dynofa_corunner_"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGTERM from the kernel when the parent dies (Linux), so a killed launcher leaves no busy loops."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the duration bounds the run instead


def burn(duty: float, period_s: float, until: float) -> int:
    """Busy for `duty` of each period until the monotonic time `until`; returns the loop count (work done)."""
    count = 0
    while (start := time.monotonic()) < until:
        busy_end = min(until, start + duty * period_s)
        while time.monotonic() < busy_end:
            count += 1
        rest = min(until - time.monotonic(), (1.0 - duty) * period_s)
        if rest > 0:
            time.sleep(rest)
    return count


def _worker(duty: float, period_s: float, until: float) -> None:
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        burn(duty, period_s, until)
    except KeyboardInterrupt:
        pass


def check(workers: int, duty: float, period_s: float, duration_s: float, cap: float | None) -> None:
    """ValueError naming the first argument out of range."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be within 1..{MAX_WORKERS}, got {workers}")
    if not 0.0 < duty <= 1.0:
        raise ValueError(f"duty must be within (0, 1], got {duty}")
    if not PERIOD_RANGE_S[0] <= period_s <= PERIOD_RANGE_S[1]:
        raise ValueError(f"period must be within {PERIOD_RANGE_S} s, got {period_s}")
    if not 0.0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be within (0, {MAX_DURATION_S:g}] s, got {duration_s}")
    if cap is not None and not 0.01 <= cap <= 1.0:
        raise ValueError(f"cap must be within [0.01, 1], got {cap}")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(workers: int, duty: float, period_s: float, duration_s: float, cap: float | None = None,
        cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Start the workers, optionally confine them, wait for the duration or SIGINT/SIGTERM, clean up."""
    check(workers, duty, period_s, duration_s, cap)
    until = time.monotonic() + duration_s
    ctx = multiprocessing.get_context("fork")   # no threads here yet; fork starts in milliseconds
    procs = [ctx.Process(target=_worker, args=(duty, period_s, until), daemon=True) for _ in range(workers)]
    group = None
    try:
        for p in procs:
            p.start()
        if cap is not None:
            group = _confine([p.pid for p in procs if p.pid], cap, workers, cgroup_root)
        print(f"corunner: {workers} worker(s), duty {duty:.2f}, period {period_s * 1e3:.0f} ms, "
              f"{duration_s:g} s, pids {[p.pid for p in procs]}"
              + (f", capped at {cap:.2f} of {workers} CPU(s) (cgroup)" if group else ""), flush=True)
        for p in procs:
            p.join(max(0.0, until - time.monotonic()) + 1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.pid is None:
                continue   # interrupted before this one started
            if p.is_alive():
                p.terminate()
            p.join(2.0)
        if group is not None:
            for r in group.close():
                if not r.ok and not r.error.startswith("ESRCH"):   # a finished worker cannot be moved back
                    print(f"corunner: cgroup clean-up: {r}", file=sys.stderr, flush=True)
    return 0


def _confine(pids: list[int], cap: float, cores: int, cgroup_root: str) -> CgroupCpuBandwidth | None:
    for r in release_stale_groups(GROUP_PREFIX, cgroup_root):   # left by a co-runner killed with SIGKILL
        if not r.ok and not r.error.startswith("ESRCH"):
            print(f"corunner: stale group: {r}", file=sys.stderr, flush=True)
    try:
        group = CgroupCpuBandwidth(f"{GROUP_PREFIX}{os.getpid()}", cores, cgroup_root)
    except (RuntimeError, OSError) as exc:
        print(f"corunner: not confined ({exc}); running unconfined", file=sys.stderr, flush=True)
        return None
    failed = [r for r in group.add_pids(pids) + [group.set_fraction(cap)] if not r.ok]
    for r in failed:
        print(f"corunner: {r}", file=sys.stderr, flush=True)
    return group


class CoRunner:
    """The co-runner as a child process group: `start()`, `stop()`, or `with CoRunner(...):`."""

    def __init__(self, workers: int = 1, duty: float = 1.0, period_s: float = 0.1, duration_s: float = 600.0,
                 cap: float | None = None, log_path: str | os.PathLike | None = None) -> None:
        check(workers, duty, period_s, duration_s, cap)
        self.args = [sys.executable, "-m", MODULE, "--workers", str(workers), "--duty", str(duty),
                     "--period", str(period_s), "--duration", str(duration_s)]
        if cap is not None:
            self.args += ["--cap", str(cap)]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> CoRunner:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - child owns it
        try:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log_path:
                out.close()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time the co-runner and its live workers have used so far (0 when not running)."""
        if not self.running():
            return 0.0
        try:
            parent = psutil.Process(self.process.pid)
            return sum(sum(p.cpu_times()[:2]) for p in (parent, *parent.children()))
        except psutil.Error:
            return 0.0

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (the co-runner removes its cgroup), then SIGKILL of the group; the exit code. The
        timeout is generous: busy workers on a saturated machine can delay the parent's clean-up."""
        if self.process is None:
            return None
        return stop_process_group(self.process, timeout)

    def __enter__(self) -> CoRunner:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="busy processes")
    parser.add_argument("--duty", type=float, default=1.0, help="busy share of each period, (0, 1]")
    parser.add_argument("--period", type=float, default=0.1, help="duty-cycle period, s")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--cap", type=float, default=None,
                        help="confine the workers to this share of their CPUs through a cgroup CFS quota")
    parser.add_argument("--cgroup-root", default="/sys/fs/cgroup")
    a = parser.parse_args(argv)
    try:
        check(a.workers, a.duty, a.period, a.duration, a.cap)
    except ValueError as exc:
        parser.error(str(exc))   # exits 2
    _die_with_parent()
    signal.signal(signal.SIGTERM, _raise_interrupt)   # SIGTERM cleans up like SIGINT
    # a parent that ignores SIGINT (a background job of a non-interactive shell) passes that on; stop() sends it
    signal.signal(signal.SIGINT, _raise_interrupt)
    return run(a.workers, a.duty, a.period, a.duration, a.cap, a.cgroup_root)


if __name__ == "__main__":
    sys.exit(main())
