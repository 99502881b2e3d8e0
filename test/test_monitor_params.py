"""Start-up parameter validation of the platform monitor and frequency actuator nodes (issue 13, items
6-8), through real processes: a bad value is exit code 1 and exactly one FATAL line, never a traceback,
never silently replaced by its default, never a busy loop; and the monitor's per-workload state is bounded."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

BROKEN_PROFILES = {
    "broken_yaml": "name: x\ndomains: [\n",
    "no_levels": "name: x\ndomains:\n  - {name: cpu0, kind: cpu, static_w: 1, dynamic_w: 1, levels_khz: []}\n"
                 "board_idle_w: 1\nthermal: {zones: [z], ambient_c: 25, throttle_c: 90, resistance_c_per_w: 1,"
                 " capacity_j_per_c: 1}\nbattery: {capacity_wh: 1, voltage_v: 1}\n",
    "zero_hz_level": "name: x\ndomains:\n  - {name: cpu0, kind: cpu, static_w: 1, dynamic_w: 1, levels_khz: [0, 1000]}\n"
                     "board_idle_w: 1\nthermal: {zones: [z], ambient_c: 25, throttle_c: 90, resistance_c_per_w: 1,"
                     " capacity_j_per_c: 1}\nbattery: {capacity_wh: 1, voltage_v: 1}\n",
}

# (executable, parameters, text the fatal line must contain); "{tmp}" is replaced by the test's folder
CASES = [
    ("platform_monitor_node", {"rate_hz": 0.0}, "rate_hz must be in (0, 100]"),
    ("platform_monitor_node", {"rate_hz": 1e9}, "rate_hz must be in (0, 100]"),
    ("platform_monitor_node", {"rate_hz": float("nan")}, "rate_hz"),
    ("platform_monitor_node", {"time_scale": 0.0}, "time_scale"),
    ("platform_monitor_node", {"battery_percent": 150.0}, "battery_percent"),
    ("platform_monitor_node", {"background_cpu_load": 2.0}, "background_cpu_load"),
    ("platform_monitor_node", {"ambient_c": 1000.0}, "ambient_c"),
    ("platform_monitor_node", {"sysfs_root": "{tmp}/nowhere"}, "is not a directory"),
    ("platform_monitor_node", {"simulated": True, "device_profile": "no_such_board"}, "no device profile"),
    ("platform_monitor_node", {"simulated": True, "device_profile": "{tmp}/broken_yaml.yaml"}, "not valid YAML"),
    ("platform_monitor_node", {"simulated": True, "device_profile": "{tmp}/no_levels.yaml"}, "at least one level"),
    ("platform_monitor_node", {"simulated": True, "device_profile": "{tmp}/zero_hz_level.yaml"}, "> 0 Hz"),
    ("platform_monitor_node", {"rate_hz": "fast"}, "rate_hz"),
    ("frequency_actuator_node", {"backend": "bogus"}, "backend must be one of"),
    ("frequency_actuator_node", {"device_profile": "{tmp}/broken_yaml.yaml"}, "not valid YAML"),
    ("frequency_actuator_node", {"device_profile": "{tmp}/zero_hz_level.yaml"}, "> 0 Hz"),
    ("frequency_actuator_node", {"emulation_cores": -1}, "emulation_cores"),
    ("frequency_actuator_node", {"backend": "sysfs", "sysfs_root": "{tmp}"}, "no cpufreq policy or GPU devfreq"),
    ("frequency_actuator_node", {"sysfs_root": "{tmp}/nowhere"}, "is not a directory"),
    ("frequency_actuator_node", {"dry_run": False, "state_file": "{tmp}/broken_yaml.yaml/state.json"},
     "state_file"),
    ("frequency_actuator_node", {"backend": "emulation", "cgroup_root": "{tmp}"}, "no cgroup CPU controller"),
]


def _fill(value, tmp: Path):
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


@pytest.mark.parametrize("executable, parameters, expected", CASES,
                         ids=[f"{e.split('_')[0]}-{'-'.join(f'{k}={v}' for k, v in p.items())[:60]}"
                              for e, p, _ in CASES])
def test_bad_parameter_is_one_fatal_line_and_exit_1(ros_graph, tmp_path, executable, parameters, expected):
    for name, text in BROKEN_PROFILES.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    proc = ros_graph.start(executable, parameters={k: _fill(v, tmp_path) for k, v in parameters.items()})
    try:
        code = proc.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{executable} still running with {parameters}: a bad value was accepted")
    out = proc.output()
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert code == 1, out
    assert len(fatal) == 1 and expected in fatal[0], out
    assert "Traceback" not in out, out


def test_workload_names_are_bounded_and_the_monitor_keeps_publishing(ros_graph, probe):
    from dynofa_ros.msg import PlatformLoad, WorkloadStatus
    probe.subscribe(PlatformLoad, "platform_load")
    status = probe.publisher(WorkloadStatus, "workload_status", 200)
    proc = ros_graph.start("platform_monitor_node", parameters={"simulated": True, "rate_hz": 10.0})
    probe.wait_for(lambda: status.get_subscription_count() > 0, 30, "the monitor to subscribe")
    for i in range(300):  # far more names than the cap, all fresh: some may be dropped by a busy reader
        status.publish(WorkloadStatus(workload=f"w{i}", output_rate_hz=1.0, latency_p50_ms=1.0))
        time.sleep(0.005)
    probe.wait_for(lambda: "more than 64 workloads" in proc.output(), 15, "the cap warning")
    t0 = time.monotonic()
    probe.wait_for(lambda: len(probe.since("platform_load", t0)) >= 3, 10, "platform load after the flood")
    assert proc.running() and proc.output().count("more than 64 workloads") == 1   # rate-limited
