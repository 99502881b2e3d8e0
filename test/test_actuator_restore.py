"""Restoring frequencies (issue 13, item 3) with the real actuator node process on a fake Xavier NX tree:
originals persisted to a state file and restored after kill -9 and a restart; every file restored
independently; no frequency list -> clamped or refused; failed writes logged with path and errno. Each
case also checks that a later good decision is still applied. Plus the state file's strict parser."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from test_platform_sysfs import make_xavier_nx

pytestmark = pytest.mark.ros

POL = "sys/devices/system/cpu/cpu{}/cpufreq"           # the paths as the actuator names them
GPU = "sys/class/devfreq/17000000.gv11b"


def _read(p: Path) -> str:
    return p.read_text(errors="replace").strip()


def _start(ros_graph, root: Path, state: Path):
    return ros_graph.start("frequency_actuator_node", parameters={
        "backend": "sysfs", "sysfs_root": str(root), "dry_run": False, "state_file": str(state)})


def _decision(**domains_hz):
    from dynofa_ros.msg import DomainFrequency, FrequencyDecision
    return FrequencyDecision(domains=[DomainFrequency(domain=d, frequency_hz=hz) for d, hz in domains_hz.items()],
                             dry_run=False)


def _apply_until(probe, pub, msg, done, what: str, timeout: float = 30.0) -> None:
    """Publish `msg` until `done()` (a restarted node may not be discovered at once)."""
    def attempt():
        if pub.get_subscription_count() > 0:
            pub.publish(msg)
            time.sleep(0.2)
        return done()
    probe.wait_for(attempt, timeout, what)


@pytest.fixture
def nx_setup(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import FrequencyDecision
    root = make_xavier_nx(tmp_path / "nx")
    pub = probe.publisher(FrequencyDecision, "frequency_decision", latched=True)
    return root, tmp_path / "state" / "actuator.json", pub


def _cpu0_applied(root: Path):
    return lambda: _read(root / POL.format(0) / "scaling_setspeed") == "1036800"


def _assert_clean_exit(proc) -> str:
    assert proc.stop() == 0
    out = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in out, out
    return out


def test_kill9_then_restart_restores_the_true_originals(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    pol0, pol2, gpu = root / POL.format(0), root / POL.format(2), root / GPU
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000, gpu=306_000_000),
                 lambda: _cpu0_applied(root)() and _read(gpu / "max_freq") == "306000000", "the first decision")
    saved = json.loads(state.read_text())["originals"]
    assert saved[str(pol0 / "scaling_governor")] == "schedutil"
    assert saved[str(gpu / "min_freq")] == "114750000" and saved[str(gpu / "max_freq")] == "1109250000"
    os.killpg(proc.process.pid, signal.SIGKILL)
    proc.process.wait(10)
    assert _read(pol0 / "scaling_governor") == "userspace" and _read(gpu / "min_freq") == "306000000"

    proc = _start(ros_graph, root, state)        # finds the pinned state; must not take it as the original
    probe.wait_for(lambda: "recovered" in proc.output(), 30, "the restarted actuator's recovery line")
    _apply_until(probe, pub, _decision(cpu2=729_600_000),
                 lambda: _read(pol2 / "scaling_setspeed") == "729600", "a decision after the restart")
    out = _assert_clean_exit(proc)
    assert "recovered 4 original(s)" in out
    assert _read(pol0 / "scaling_governor") == _read(pol2 / "scaling_governor") == "schedutil"
    assert _read(gpu / "min_freq") == "114750000" and _read(gpu / "max_freq") == "1109250000"
    assert not state.exists(), "the state file must be removed after a successful restore"


def test_sigterm_restores_like_sigint(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000), _cpu0_applied(root), "the decision")
    os.killpg(proc.process.pid, signal.SIGTERM)                  # what systemd and launch send
    assert proc.process.wait(15) == 0
    assert _read(root / POL.format(0) / "scaling_governor") == "schedutil" and not state.exists()


def test_one_unreadable_original_does_not_skip_the_rest_of_the_gpu_restore(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    gpu = root / GPU
    (gpu / "min_freq").write_bytes(b"\xff\xfe\n")      # not UTF-8: its original cannot be read
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(gpu=306_000_000), lambda: _read(gpu / "max_freq") == "306000000",
                 "the GPU decision")
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000), _cpu0_applied(root), "a later good decision")
    out = _assert_clean_exit(proc)
    assert f"{gpu / 'min_freq'} <- (original) FAILED: cannot restore: it was unreadable" in out
    assert _read(gpu / "max_freq") == "1109250000"          # the other GPU file is still restored
    assert _read(root / POL.format(0) / "scaling_governor") == "schedutil"
    assert not state.exists()   # nothing restorable is left: the unusable original is not kept forever


def test_one_unparsable_original_does_not_abort_the_other_restores(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    gpu = root / GPU
    (gpu / "max_freq").write_text("garbage\n")
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(gpu=306_000_000, cpu0=1_000_000_000),
                 lambda: _read(gpu / "min_freq") == "306000000" and _cpu0_applied(root)(), "the decision")
    _apply_until(probe, pub, _decision(gpu=510_000_000), lambda: _read(gpu / "min_freq") == "510000000",
                 "a later good decision")
    out = _assert_clean_exit(proc)
    assert "'garbage' is not an integer" in out
    assert _read(gpu / "min_freq") == "114750000"
    assert _read(root / POL.format(0) / "scaling_governor") == "schedutil"


def test_no_frequency_list_clamps_to_cpuinfo_or_refuses(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    pol2, pol4, gpu = root / POL.format(2), root / POL.format(4), root / GPU
    (pol2 / "scaling_available_frequencies").unlink()            # clamp to cpuinfo_min/max_freq
    (pol4 / "scaling_available_frequencies").unlink()
    (pol4 / "cpuinfo_max_freq").unlink()                         # nothing to clamp to: refuse
    (gpu / "available_frequencies").unlink()                     # devfreq has no cpuinfo: refuse
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(cpu2=5_000_000_000, cpu4=500_000_000, gpu=306_000_000),
                 lambda: _read(pol2 / "scaling_setspeed") == "1907200", "cpu2 clamped to cpuinfo_max_freq")
    _apply_until(probe, pub, _decision(cpu2=1_000), lambda: _read(pol2 / "scaling_setspeed") == "115200",
                 "cpu2 clamped to cpuinfo_min_freq")
    assert _read(pol4 / "scaling_setspeed") == "<unsupported>" and _read(pol4 / "scaling_governor") == "schedutil"
    assert _read(gpu / "min_freq") == "114750000" and _read(gpu / "max_freq") == "1109250000"
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000), _cpu0_applied(root), "a later good decision")
    out = _assert_clean_exit(proc)
    assert f"{pol4} <- 500000000 FAILED: refused: no scaling_available_frequencies and no cpuinfo" in out
    assert f"{gpu} <- 306000000 FAILED: refused: no available_frequencies" in out


def test_a_failed_write_is_logged_with_path_and_errno(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    gpu = root / GPU
    proc = _start(ros_graph, root, state)
    probe.wait_for(lambda: "backend sysfs" in proc.output(), 30, "the actuator to start")
    (gpu / "max_freq").unlink()
    (gpu / "max_freq").mkdir()                                   # opening it for writing fails: EISDIR
    _apply_until(probe, pub, _decision(gpu=306_000_000), lambda: "write failed" in proc.output(),
                 "the failed write's log line")
    line = next(x for x in proc.output().splitlines() if "write failed" in x)
    assert f"{gpu / 'max_freq'} <- 306000000 FAILED: EISDIR" in line and "WARN" in line
    flood = _decision(**{f"d{i}": 1 for i in range(65)})                # more domains than any board has
    _apply_until(probe, pub, flood, lambda: "ignored a decision with 65 domains" in proc.output(), "the cap")
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000), _cpu0_applied(root), "a later good decision")
    out = _assert_clean_exit(proc)
    assert out.count("write failed") == 1, "the same failure is rate-limited, not logged per decision"
    assert _read(gpu / "min_freq") == "114750000"               # what was written is restored


def test_a_malformed_state_file_is_set_aside_and_the_node_serves(ros_graph, probe, nx_setup):
    root, state, pub = nx_setup
    state.parent.mkdir(parents=True)
    state.write_text('{"version": 1, "originals": {"relative/path": "1"}}')
    proc = _start(ros_graph, root, state)
    _apply_until(probe, pub, _decision(cpu0=1_000_000_000), _cpu0_applied(root), "a decision")
    out = _assert_clean_exit(proc)
    assert "ignoring a malformed state file" in out and "bad path" in out
    assert state.with_name(state.name + ".bad").exists() and not state.exists()
    assert _read(root / POL.format(0) / "scaling_governor") == "schedutil"


@pytest.mark.parametrize("text, why", [
    ("[1, 2]", "not a version 1"),
    ('{"version": 2, "originals": {}}', "not a version 1"),
    ('{"version": 1, "originals": {}, "x": 1}', "not a version 1"),
    ('{"version": 1, "originals": {"/a": 5}}', "bad original"),
    ('{"version": 1, "originals": {"/a": "x\\ny"}}', "bad original"),
    ('{"version": 1, "originals": ["/a"]}', "mapping"),
    ("[" * 100_000, "larger than"),
    ("[" * 60_000, "not JSON"),
    ("__import__('os')", "not JSON"),
])
def test_state_file_parser_is_strict(tmp_path, text, why):
    from dynofa_ros.platform.actuators import OriginalsStore
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why):
        OriginalsStore(path).load()


def test_state_file_round_trip_is_atomic_and_keeps_foreign_entries(tmp_path):
    from dynofa_ros.platform.actuators import OriginalsStore
    store = OriginalsStore(tmp_path / "s" / "state.json")
    assert store.load() == {}
    store.save({"/sys/a": "1", "/sys/b": None})
    assert store.load() == {"/sys/a": "1", "/sys/b": None}
    assert [p.name for p in store.path.parent.iterdir()] == ["state.json"]   # no temp file left behind
    store.foreign = {"/other/root/x": "7"}
    store.finish({})
    assert store.load() == {"/other/root/x": "7"}
    store.foreign = {}
    store.finish({})
    assert not store.path.exists()


CGROUP_V1 = Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(not os.access(CGROUP_V1 / "cpu.cfs_quota_us", os.W_OK) or os.geteuid() != 0,
                    reason="needs a writable cgroup v1 CPU controller (root)")
def test_emulation_kill9_then_restart_releases_the_throttled_processes(ros_graph, probe, tmp_path):
    import subprocess
    import sys
    from dynofa_ros.msg import FrequencyDecision
    pub = probe.publisher(FrequencyDecision, "frequency_decision", latched=True)
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.01)"])
    params = {"backend": "emulation", "dry_run": False, "emulation_pids": [child.pid], "emulation_cores": 1,
              "device_profile": "generic_x86", "state_file": str(tmp_path / "state.json")}
    try:
        proc = ros_graph.start("frequency_actuator_node", parameters=params)
        probe.wait_for(lambda: "backend emulation" in proc.output(), 30, "the emulation backend")
        group = CGROUP_V1 / f"dynofa_emulated_dvfs_{proc.process.pid}"
        _apply_until(probe, pub, _decision(cpu0=800_000_000),
                     lambda: group.exists() and _read(group / "cpu.cfs_quota_us") == "26666", "the CPU cap")
        assert str(child.pid) in _read(group / "cgroup.procs").split()
        os.killpg(proc.process.pid, signal.SIGKILL)
        proc.process.wait(10)
        assert group.exists(), "a killed actuator cannot clean up: its group still caps the process"
        proc = ros_graph.start("frequency_actuator_node", parameters={**params, "emulation_pids": [0]})
        probe.wait_for(lambda: "backend emulation" in proc.output(), 30, "the restarted actuator")
        assert not group.exists() and "stale emulation group" in proc.output()
        assert str(child.pid) in _read(CGROUP_V1 / "cgroup.procs").split()   # back in the parent, uncapped
        _assert_clean_exit(proc)
    finally:
        child.kill()
        child.wait()


def test_foreign_entries_are_kept_unless_their_files_are_gone(tmp_path):
    from dynofa_ros.platform.actuators import OriginalsStore, SysfsFrequencyActuator
    root = make_xavier_nx(tmp_path / "nx")
    other = tmp_path / "other_root_attr"
    other.write_text("7\n")
    state = tmp_path / "state.json"
    OriginalsStore(state).save({str(other): "7", str(tmp_path / "removed/tree/attr"): "1"})
    act = SysfsFrequencyActuator(root, state_file=state)
    assert any("outside this actuator's allowlist" in m for m in act.recover())
    assert act.writer.store.foreign == {str(other): "7"}
    act.restore()
    assert OriginalsStore(state).load() == {str(other): "7"}      # never acted on, never lost
