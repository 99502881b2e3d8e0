"""The real co-running load (issue 12, item 3): busy worker processes with a duty cycle, confined through
the cgroup path where one is writable, never outliving whoever started them."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from dynofa_ros.platform.corunner import CoRunner, burn, check


def _workers(runner: CoRunner, n: int) -> list[psutil.Process]:
    parent = psutil.Process(runner.process.pid)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kids = parent.children()
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"{n} worker(s) did not start")


def _cpu_share(procs: list[psutil.Process], seconds: float) -> float:
    """CPU-seconds per wall second of `procs` over `seconds` (1.0 = one core fully busy)."""
    t0 = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(seconds)
    return (sum(sum(p.cpu_times()[:2]) for p in procs) - t0) / seconds


def _runnable_share(proc: psutil.Process, seconds: float) -> float:
    """Running plus waiting-to-run time per wall second (/proc/<pid>/schedstat): what the process asks
    for, whatever share of the cores a loaded machine then gives it."""
    def runnable_ns() -> int:
        run_ns, wait_ns, _ = Path(f"/proc/{proc.pid}/schedstat").read_text().split()
        return int(run_ns) + int(wait_ns)
    t0, w0 = time.monotonic(), runnable_ns()
    time.sleep(seconds)
    return (runnable_ns() - w0) / 1e9 / (time.monotonic() - t0)


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="needs /proc/<pid>/schedstat")
def test_duty_cycle_sets_how_much_cpu_the_workers_ask_for():
    assert burn(1.0, 0.05, time.monotonic() + 0.1) > 0
    # a long period keeps the wake-up wait of a loaded machine small against the 50 ms busy phase
    with CoRunner(workers=1, duty=0.25, period_s=0.2, duration_s=30) as light:
        low = _runnable_share(_workers(light, 1)[0], 3.0)
    with CoRunner(workers=1, duty=1.0, duration_s=30) as full:
        high = _runnable_share(_workers(full, 1)[0], 2.0)
    assert 0.15 < low < 0.45, f"duty 0.25 asked for {low:.2f} of a CPU"
    assert high > 0.9, f"duty 1.0 asked for only {high:.2f} of a CPU"


def test_arguments_are_checked():
    for bad in (dict(workers=0), dict(duty=0.0), dict(duty=1.5), dict(period_s=0.0), dict(duration_s=-1),
                dict(cap=2.0)):
        args = dict(workers=1, duty=1.0, period_s=0.1, duration_s=1.0, cap=None) | bad
        with pytest.raises(ValueError):
            check(**args)


def test_stops_with_its_workers_and_dies_with_its_parent():
    runner = CoRunner(workers=2, duty=1.0, duration_s=60).start()
    kids = _workers(runner, 2)
    assert runner.stop() == 0
    psutil.wait_procs(kids, timeout=5)
    assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kids)
    runner = CoRunner(workers=1, duty=1.0, duration_s=60).start()
    kids = _workers(runner, 1)
    os.kill(runner.process.pid, signal.SIGKILL)                 # no clean-up runs: the kernel's SIGTERM must
    runner.process.wait()
    gone, alive = psutil.wait_procs(kids, timeout=5)
    assert not alive, "a worker outlived its killed parent"


@pytest.mark.skipif(not os.access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", os.W_OK) or os.geteuid() != 0,
                    reason="needs a writable cgroup v1 CPU controller (root)")
def test_cap_confines_the_workers_through_a_cgroup():
    with CoRunner(workers=1, duty=1.0, duration_s=30, cap=0.2) as runner:
        kids = _workers(runner, 1)
        group = Path(f"/sys/fs/cgroup/cpu/dynofa_corunner_{runner.process.pid}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (group.exists() and (group / "cgroup.procs").read_text().strip()):
            time.sleep(0.05)
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "20000"
        assert _cpu_share(kids, 1.5) < 0.3                       # 20 % of one CPU
    assert not group.exists(), "the co-runner's cgroup is removed on stop"


def test_stale_groups_of_dead_owners_are_released(tmp_path):
    from dynofa_ros.platform.emulation import release_stale_groups
    cpu = tmp_path / "cpu"
    for group, quota, procs in (("", "-1", ""), ("dyn_999999999", "20000", "4242"), (f"dyn_{os.getpid()}", "30000", "17")):
        (cpu / group).mkdir(parents=True, exist_ok=True)
        for f, v in {"cpu.cfs_quota_us": quota, "cpu.cfs_period_us": "100000", "cgroup.procs": procs, "tasks": procs}.items():
            (cpu / group / f).write_text(v + "\n")
    results = release_stale_groups("dyn_", tmp_path)
    assert (cpu / "dyn_999999999/cpu.cfs_quota_us").read_text() == "-1"     # the dead owner's cap is lifted
    assert (cpu / "cgroup.procs").read_text() == "4242"                      # its process moved to the parent
    assert (cpu / f"dyn_{os.getpid()}/cpu.cfs_quota_us").read_text().strip() == "30000"   # a live owner's is kept
    assert any(r.value == "rmdir" and not r.ok for r in results)            # a fake folder is not empty: reported
