"""Emulated DVFS (cgroup CPU bandwidth, v1 and v2 layouts; the real controller where writable) and the
simulated platform (modelled power, battery, thermal RC, throttling, device profiles)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynofa_ros.platform.emulation import CgroupCpuBandwidth, detect_cgroup, pids_matching
from dynofa_ros.platform.profiles import PROFILE_NAMES, load_profile
from dynofa_ros.platform.simulated import SimulatedPlatform


def _fake_v1(root: Path, name: str) -> Path:
    cpu = root / "cpu"
    cpu.mkdir(parents=True)
    for f, v in {"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000", "cgroup.procs": "", "tasks": ""}.items():
        (cpu / f).write_text(v + "\n")
    # cgroupfs creates a new group's files itself; a fake tree needs them up front
    (cpu / name).mkdir()
    for f, v in {"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000", "cgroup.procs": "", "tasks": ""}.items():
        (cpu / name / f).write_text(v + "\n")
    return cpu


def test_cgroup_v1_layout(tmp_path):
    cpu = _fake_v1(tmp_path, "g")
    assert detect_cgroup(tmp_path) == ("v1", cpu)
    bw = CgroupCpuBandwidth("g", cores=2, cgroup_root=tmp_path)
    assert bw.add_pids([4242])[0].ok and (cpu / "g/cgroup.procs").read_text() == "4242"
    r = bw.set_fraction(0.25)
    assert r.ok and r.emulated and (cpu / "g/cpu.cfs_quota_us").read_text() == "50000"
    assert "emulation" in str(r)
    res = bw.close()
    assert (cpu / "g/cpu.cfs_quota_us").read_text() == "-1"
    assert (cpu / "cgroup.procs").read_text() == "4242"  # moved back to the parent
    assert any(not r.ok and r.value == "rmdir" for r in res)  # fake folder not empty: reported, not raised


def test_cgroup_v2_layout(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.procs").write_text("")
    (tmp_path / "g").mkdir()
    (tmp_path / "g/cpu.max").write_text("max 100000\n")
    (tmp_path / "g/cgroup.procs").write_text("")
    assert detect_cgroup(tmp_path) == ("v2", tmp_path)
    bw = CgroupCpuBandwidth("g", cores=4, cgroup_root=tmp_path)
    bw.set_fraction(0.5)
    assert (tmp_path / "g/cpu.max").read_text() == "200000 100000"
    bw.close()
    assert (tmp_path / "g/cpu.max").read_text() == "max 100000"
    assert detect_cgroup(tmp_path / "none") is None


def test_dry_run_creates_and_writes_nothing(tmp_path):
    _fake_v1(tmp_path, "other")
    bw = CgroupCpuBandwidth("g", cores=2, cgroup_root=tmp_path, dry_run=True)
    assert bw.set_fraction(0.3).dry_run and not (tmp_path / "cpu/g").exists()


@pytest.mark.skipif(not os.access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", os.W_OK) or os.geteuid() != 0,
                    reason="needs a writable cgroup v1 CPU controller (root)")
def test_real_cgroup_bandwidth_slows_a_busy_process():
    import psutil
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    bw = None
    try:
        bw = CgroupCpuBandwidth(f"dynofa_test_{os.getpid()}", cores=1)
        assert bw.add_pids([child.pid])[0].ok
        proc = psutil.Process(child.pid)

        def share(seconds=0.8):
            t0 = sum(proc.cpu_times()[:2])
            time.sleep(seconds)
            return (sum(proc.cpu_times()[:2]) - t0) / seconds

        bw.set_fraction(0.1)
        time.sleep(0.2)
        assert share() < 0.3   # 10 % of one CPU (generous bound on a shared machine)
        res = bw.close()
        assert all(r.ok for r in res) and not bw.group.exists()
    finally:
        if bw is not None and bw.group.exists():
            bw.close()
        child.kill()
        child.wait()


def test_pids_matching_never_matches_itself_or_ancestors():
    assert pids_matching("") == []
    me = " ".join(Path(f"/proc/{os.getpid()}/cmdline").read_bytes().decode().split("\0"))
    assert os.getpid() not in pids_matching(me.strip()[:30])


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profiles_load_and_cite_sources(name):
    p = load_profile(name)
    assert p.modelled and p.sources and any(d.kind == "cpu" for d in p.domains)
    assert all(list(d.levels_hz) == sorted(d.levels_hz) for d in p.domains)
    assert p.thermal.throttle_c > p.thermal.ambient_c


def test_profile_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="known"):
        load_profile("no_such_board")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndomains: []\n")
    with pytest.raises(ValueError, match="malformed device profile"):
        load_profile(str(bad))


def test_simulated_battery_thermal_and_throttling():
    prof = load_profile("jetson_xavier_nx")
    sim = SimulatedPlatform(prof, battery_percent=50.0, ambient_c=60.0)
    idle = sim.power_w()
    sim.set_workload_util("cpu", 1.0)
    sim.set_workload_util("gpu", 1.0)
    busy = sim.power_w()
    assert busy > idle
    e0 = sim.energy_j
    for _ in range(300):
        sim.step(2.0)
    assert sim.energy_j < e0 and sim.battery_percent < 50.0
    assert sim.throttled and sim.snapshot().throttled   # 60 C ambient + full load reaches 96 C
    snap = sim.snapshot()
    assert snap.modelled and snap.frequencies_hz["gpu"] <= prof.domain("gpu").max_hz * 0.5
    assert set(snap.temperatures_c) == set(prof.thermal.zones)
    assert snap.battery.current_a < 0 and len(snap.cpu_percent) == 6
    # lower clocks: less power, and the model cools down below the release point
    sim.set_frequencies({d.name: d.levels_hz[0] for d in prof.domains})
    assert sim.power_w() < busy
    for _ in range(300):
        sim.step(2.0)
    assert not sim.throttled
    sim.charging = True
    e1 = sim.energy_j
    sim.step(10.0)
    assert sim.energy_j == e1


def test_simulated_background_load_shows_in_cpu_percent():
    sim = SimulatedPlatform(load_profile("generic_x86"), noise=0.0)
    sim.inject_load("cpu", 0.7)
    snap = sim.snapshot()
    assert snap.cpu_percent == [pytest.approx(70.0)] * 2 and snap.gpu_percent != snap.gpu_percent  # NaN
