"""The resource manager, platform monitor and frequency actuator as real processes on a private
localhost-only ROS domain: topic and parameter retargeting (with rejection of bad values), load spikes,
unknown workloads, the simulated and the sysfs monitor, and actuation with restore on exit."""
from __future__ import annotations

import math
import time

import pytest

from test_manager_policy import make_table
from test_platform_sysfs import make_agx_orin, make_xavier_nx

pytestmark = pytest.mark.ros


def _latest(probe, topic, pred=lambda m: True):
    msgs = [m for m in probe.received(topic) if pred(m)]
    return msgs[-1] if msgs else None


def test_resource_manager_node_retargets_by_topic_and_parameter(ros_graph, probe, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from dynofa_ros.msg import FrequencyDecision, PerformanceTarget, PlatformLoad, SubnetDecision
    from dynofa_ros.operating_points import save_table
    table = tmp_path / "table.yaml"
    save_table(make_table(), table)
    for t, m in (("subnet_decision", SubnetDecision), ("frequency_decision", FrequencyDecision),
                 ("/diagnostics", DiagnosticArray)):
        probe.subscribe(m, t)
    targets = probe.publisher(PerformanceTarget, "performance_target")
    loads = probe.publisher(PlatformLoad, "platform_load")
    proc = ros_graph.start("resource_manager_node", parameters={
        "operating_points": str(table), "workloads": ["cam", "aux"], "cam.max_latency_ms": 18.0,
        "cam.priority": 2, "aux.rate_hz": 1.0, "device_profile": "jetson_xavier_nx", "refresh_period_s": 0.5,
        "min_dwell_s": 0.2})
    cam = lambda m: m.workload == "cam"  # noqa: E731
    probe.wait_for(lambda: (m := _latest(probe, "subnet_decision", cam)) and m.subnet_id == "p5", 30,
                   "the initial decision (most accurate point)")
    f = probe.wait_for(lambda: _latest(probe, "frequency_decision"), 5, "a frequency decision")
    assert [d.domain for d in f.domains] == ["cpu0", "cpu2", "cpu4", "gpu"] and f.dry_run

    # parameter retargeting: NaN and negative values are rejected with the reason
    r = probe.set_parameters("resource_manager", {"cam.max_latency_ms": math.nan})
    assert not r.successful and "finite" in r.reason
    r = probe.set_parameters("resource_manager", {"cam.max_latency_ms": -3.0})
    assert not r.successful and ">= 0" in r.reason
    t0 = time.monotonic()
    r = probe.set_parameters("resource_manager", {"cam.max_latency_ms": 5.0})
    assert r.successful, r.reason
    m = probe.wait_for(lambda: (m := _latest(probe, "subnet_decision", cam)) and m.subnet_id in ("p1", "p2") and m, 5,
                       "the decision after the parameter retarget")
    assert time.monotonic() - t0 < 3.0 and "5.0 ms" in m.reason

    # topic retargeting reacts on arrival (well under a second); an unknown workload only warns, and a NaN
    # or negative field rejects the whole target (the same rule as the parameters) with a warning
    # (one warning per workload however often it is repeated: rate-limited)
    targets.publish(PerformanceTarget(workload="ghost", max_latency_ms=1.0))
    for _ in range(5):
        targets.publish(PerformanceTarget(workload="cam", max_latency_ms=-18.0, priority=2))
    targets.publish(PerformanceTarget(workload="aux", max_latency_ms=18.0, min_accuracy=float("nan")))
    probe.wait_for(lambda: "min_accuracy must be finite" in proc.output(), 5, "the rejection of the NaN field")
    rejected = [ln for ln in proc.output().splitlines() if "rejected performance target for cam" in ln]
    assert len(rejected) == 1 and "max_latency_ms must be >= 0" in rejected[0], rejected
    assert _latest(probe, "subnet_decision", cam).subnet_id in ("p1", "p2"), "a rejected target changed the decision"
    t1 = time.monotonic()
    targets.publish(PerformanceTarget(workload="cam", max_latency_ms=18.0, priority=2))
    probe.wait_for(lambda: (m := _latest(probe, "subnet_decision", cam)) and m.subnet_id == "p5", 5, "relaxed")
    assert time.monotonic() - t1 < 1.0
    # a load spike: the accurate point no longer fits beside the co-runner
    t2 = time.monotonic()
    loads.publish(PlatformLoad(cpu_percent=[100.0] * 6, gpu_percent=float("nan")))
    m = probe.wait_for(lambda: (m := _latest(probe, "subnet_decision", cam)) and m.subnet_id != "p5" and m, 5,
                       "a switch after the load spike")
    assert time.monotonic() - t2 < 1.0
    diags = probe.wait_for(lambda: [s for a in probe.received("/diagnostics") for s in a.status
                                    if s.name == "dynofa_ros: workload cam"], 5, "diagnostics")
    assert any(kv.key == "subnet_id" for kv in diags[-1].values)
    assert proc.running()
    assert "unknown workload 'ghost'" in proc.output()


def test_platform_monitor_node_simulated(ros_graph, probe):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import BatteryState, Temperature
    from dynofa_ros.msg import PlatformLoad
    for t, m in (("battery_state", BatteryState), ("temperature", Temperature), ("platform_load", PlatformLoad),
                 ("/diagnostics", DiagnosticArray)):
        probe.subscribe(m, t)
    ros_graph.start("platform_monitor_node", parameters={"simulated": True, "device_profile": "jetson_xavier_nx",
                                          "rate_hz": 10.0, "battery_percent": 35.0, "background_cpu_load": 0.5})
    probe.wait_for(lambda: len(probe.received("platform_load")) >= 3, 30, "platform load")
    load = probe.received("platform_load")[-1]
    assert load.modelled and len(load.cpu_percent) == 6 and 30.0 < sum(load.cpu_percent) / 6 < 70.0
    zones = {m.header.frame_id for m in probe.received("temperature")}
    assert zones == {"CPU-therm", "GPU-therm", "SOC0-therm", "Tboard_tegra"}
    b = probe.received("battery_state")[-1]
    assert 0.3 < b.percentage <= 0.35 and b.current < 0
    d = probe.wait_for(lambda: probe.received("/diagnostics"), 5, "diagnostics")[-1].status[0]
    assert "modelled" in d.message


def test_platform_monitor_node_reads_fake_orin_sysfs(ros_graph, probe, tmp_path):
    from sensor_msgs.msg import BatteryState, Temperature
    from dynofa_ros.msg import PlatformLoad
    root = make_agx_orin(tmp_path / "orin")
    for t, m in (("battery_state", BatteryState), ("temperature", Temperature), ("platform_load", PlatformLoad)):
        probe.subscribe(m, t)
    ros_graph.start("platform_monitor_node", parameters={"sysfs_root": str(root), "rate_hz": 10.0})
    probe.wait_for(lambda: probe.received("battery_state") and probe.received("platform_load") and any(
        m.header.frame_id == "tj-thermal" for m in probe.received("temperature")), 30, "readings")  # one CI run raced
    assert probe.received("battery_state")[-1].percentage == pytest.approx(0.63)
    temps = {m.header.frame_id: m.temperature for m in probe.received("temperature")}
    assert temps["tj-thermal"] == pytest.approx(52.0) and "cv0-thermal" not in temps
    load = probe.received("platform_load")[-1]
    assert not load.modelled and load.gpu_percent == pytest.approx(25.0)


def test_frequency_actuator_node_applies_and_restores(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import DomainFrequency, FrequencyDecision
    root = make_xavier_nx(tmp_path / "nx")
    pol0 = root / "sys/devices/system/cpu/cpufreq/policy0"
    gpu = root / "sys/devices/17000000.gv11b/devfreq/17000000.gv11b"
    pub = probe.publisher(FrequencyDecision, "frequency_decision", latched=True)
    proc = ros_graph.start("frequency_actuator_node", parameters={"backend": "sysfs", "sysfs_root": str(root), "dry_run": False,
                                                                  "state_file": str(tmp_path / "state.json")})
    probe.wait_for(lambda: pub.get_subscription_count() > 0, 30, "the actuator to subscribe")
    dry = FrequencyDecision(domains=[DomainFrequency(domain="cpu0", frequency_hz=115_200_000)], dry_run=True)
    pub.publish(dry)
    real = FrequencyDecision(domains=[DomainFrequency(domain="cpu0", frequency_hz=1_000_000_000),
                                      DomainFrequency(domain="gpu", frequency_hz=306_000_000)], dry_run=False)
    pub.publish(real)
    probe.wait_for(lambda: (pol0 / "scaling_setspeed").read_text().strip() == "1036800", 5, "cpu0 setspeed")
    assert (pol0 / "scaling_governor").read_text().strip() == "userspace"
    # domains are written one after another (each first write records its original durably first)
    probe.wait_for(lambda: (gpu / "max_freq").read_text().strip() == "306000000", 5, "gpu max_freq")
    assert proc.stop() == 0
    assert (pol0 / "scaling_governor").read_text().strip() == "schedutil"
    assert (gpu / "max_freq").read_text().strip() == "1109250000"
    assert (gpu / "min_freq").read_text().strip() == "114750000"
    assert "restore" in proc.log_path.read_text()
