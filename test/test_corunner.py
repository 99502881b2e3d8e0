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


def test_duty_cycle_bounds_the_load_and_full_duty_burns():
    assert burn(1.0, 0.05, time.monotonic() + 0.1) > 0
    with CoRunner(workers=1, duty=0.25, period_s=0.05, duration_s=30) as light:
        low = _cpu_share(_workers(light, 1), 1.5)
    with CoRunner(workers=1, duty=1.0, duration_s=30) as full:
        high = _cpu_share(_workers(full, 1), 1.5)
    assert low < 0.4, f"duty 0.25 used {low:.2f} CPU"          # contention can only lower it
    assert high > 0.3 and high > 1.5 * low, (low, high)         # a shared machine still gives it a core share


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
