"""The resource manager as a real process: its lifecycle, input freshness, state across restarts, target
semantics and parameter validation (private localhost-only domain; the in-test probe drives it), and the
ROS-free input book-keeping (`dynofa_ros/manager/inputs.py`) it relies on."""
from __future__ import annotations

import math
import os
import signal
import threading
import time

import pytest

from test_manager_policy import make_table

ros = pytest.mark.ros

NODE = "resource_manager"
XAVIER = {"device_profile": "jetson_xavier_nx"}


def _table(tmp_path):
    from dynofa_ros.operating_points import save_table
    path = tmp_path / "table.yaml"
    save_table(make_table(), path)
    return str(path)


def _state(probe) -> str:
    return probe.lifecycle_state(NODE)


def _change(probe, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    return probe.call(ChangeState, f"/{NODE}/change_state",
                      ChangeState.Request(transition=Transition(id=transition)), timeout=10.0).success


@ros
def test_lifecycle_configure_activate_deactivate_cleanup(ros_graph, probe, tmp_path):
    from lifecycle_msgs.msg import Transition
    from dynofa_ros.msg import SubnetDecision
    probe.subscribe(SubnetDecision, "subnet_decision")
    proc = ros_graph.start("resource_manager_node", name=NODE, parameters={
        "operating_points": _table(tmp_path), "workloads": ["cam"], "autostart": False,
        "refresh_period_s": 0.2})
    probe.wait_for(lambda: _state(probe) == "unconfigured", 60, "the node, unconfigured")
    time.sleep(1.0)
    assert not probe.received("subnet_decision"), "an unconfigured manager publishes nothing"
    assert _change(probe, Transition.TRANSITION_CONFIGURE) and _state(probe) == "inactive"
    time.sleep(1.0)
    assert not probe.received("subnet_decision"), "an inactive manager publishes nothing"
    assert _change(probe, Transition.TRANSITION_ACTIVATE) and _state(probe) == "active"
    probe.wait_for(lambda: len(probe.received("subnet_decision")) >= 2, 5, "decisions once active")
    assert _change(probe, Transition.TRANSITION_DEACTIVATE) and _state(probe) == "inactive"
    time.sleep(0.3)  # a decision already in flight may still arrive
    n = len(probe.received("subnet_decision"))
    time.sleep(1.0)  # five refresh periods
    assert len(probe.received("subnet_decision")) == n, "decisions after deactivate"
    assert _change(probe, Transition.TRANSITION_CLEANUP) and _state(probe) == "unconfigured"
    # and up again from scratch: configure loads everything anew
    assert _change(probe, Transition.TRANSITION_CONFIGURE) and _change(probe, Transition.TRANSITION_ACTIVATE)
    probe.wait_for(lambda: len(probe.received("subnet_decision")) > n, 5, "decisions after re-activation")
    assert proc.stop() == 0
    assert "Traceback" not in proc.log_path.read_text()


@ros
def test_failed_configure_keeps_the_node_up_and_unconfigured(ros_graph, probe, tmp_path):
    from lifecycle_msgs.msg import Transition
    proc = ros_graph.start("resource_manager_node", name=NODE, parameters={
        "operating_points": str(tmp_path / "missing.yaml"), "autostart": False})
    probe.wait_for(lambda: _state(probe) == "unconfigured", 60, "the node, unconfigured")
    assert not _change(probe, Transition.TRANSITION_CONFIGURE)
    assert _state(probe) == "unconfigured" and proc.running()
    assert "configure failed" in proc.output() and "missing.yaml" in proc.output()
    assert proc.stop() == 0



# ---------------------------------------------------------------------------------------------- helpers
def _latest(probe, topic, pred=lambda m: True):
    msgs = [m for m in probe.received(topic) if pred(m)]
    return msgs[-1] if msgs else None


def _subnet(probe, workload: str) -> str | None:
    m = _latest(probe, "subnet_decision", lambda m: m.workload == workload)
    return m.subnet_id if m else None


def _diag(probe, name: str = "resource_manager", since: float = 0.0) -> list:
    """('dynofa_ros: <name>' statuses received since `since`) as (status, {key: value}) pairs."""
    return [(s, {kv.key: kv.value for kv in s.values}) for a in probe.since("/diagnostics", since)
            for s in a.status if s.name == f"dynofa_ros: {name}"]


def _subscribe_all(probe) -> None:
    """Decisions as their subscribers should take them (latched: what was published before matching too)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from dynofa_ros.msg import FrequencyDecision, SubnetDecision
    from dynofa_ros.nodes.qos import latched_qos
    probe.subscribe(SubnetDecision, "subnet_decision", latched_qos(2))
    probe.subscribe(FrequencyDecision, "frequency_decision", latched_qos(2))
    probe.subscribe(DiagnosticArray, "/diagnostics")


def _start_manager(ros_graph, probe, tmp_path, name: str | None = NODE, **parameters):
    """A manager on the Xavier NX profile managing `cam` (18 ms bound: p5 fits when unloaded), up and deciding."""
    params = {"operating_points": _table(tmp_path), "workloads": ["cam"], "cam.max_latency_ms": 18.0,
              "diagnostics_period_s": 0.2, "min_dwell_s": 0.2, **XAVIER, **parameters}
    proc = ros_graph.start("resource_manager_node", name=name, parameters=params)
    probe.wait_for(lambda: _subnet(probe, "cam") == "p5" or not proc.running(), 60, "the initial decision (p5)")
    assert proc.running(), proc.output()
    return proc


# ---------------------------------------------------------------------------------------------- freshness
@ros
def test_a_dead_monitors_last_load_stops_counting_after_expiry(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import PlatformLoad
    _subscribe_all(probe)
    loads = probe.publisher(PlatformLoad, "platform_load")
    proc = _start_manager(ros_graph, probe, tmp_path, input_expiry_s=1.0)
    probe.wait_for(lambda: loads.get_subscription_count() > 0, 10, "the manager to subscribe to platform_load")
    t0 = time.monotonic()
    loads.publish(PlatformLoad(cpu_percent=[90.0] * 6, gpu_percent=float("nan")))  # its last message
    probe.wait_for(lambda: _subnet(probe, "cam") != "p5", 5, "a switch away from p5 under the 0.9 load")
    loaded = probe.wait_for(lambda: [v for _, v in _diag(probe, since=t0) if float(v["cpu_background_load"]) > 0.8],
                            5, "the load in diagnostics")
    assert loaded[0]["stale_inputs"] == ""
    # no further message: after the expiry the load is dropped, reported stale, and the decision recovers
    stale = probe.wait_for(lambda: [(s, v) for s, v in _diag(probe, since=t0) if "load" in v["stale_inputs"]],
                           5, "load reported stale")
    status, values = stale[0]
    assert time.monotonic() - t0 >= 1.0
    assert status.level == status.WARN and "stale inputs: load" in status.message, status.message
    assert float(values["age_load_s"]) >= 1.0 and float(values["cpu_background_load"]) == 0.0
    # (the policy does not move back towards the point it just left for its reversal dwell, 10 s)
    probe.wait_for(lambda: _subnet(probe, "cam") == "p5", 15, "p5 again once the dead monitor's load expired")
    assert time.monotonic() - t0 >= 1.0, "the load stopped counting before it expired"
    assert proc.running()


def _keep_publishing(publisher, make, period_s: float, stop: threading.Event) -> threading.Thread:
    def run():
        while not stop.is_set():
            publisher.publish(make())
            time.sleep(period_s)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@ros
def test_one_hot_reading_sets_no_cap_and_an_unrefreshed_zone_expires(ros_graph, probe, tmp_path):
    from sensor_msgs.msg import Temperature

    def reading(zone, celsius):
        m = Temperature(temperature=celsius)
        m.header.frame_id = zone
        return m
    _subscribe_all(probe)
    temps = probe.publisher(Temperature, "temperature")
    _start_manager(ros_graph, probe, tmp_path, input_expiry_s=1.0)
    probe.wait_for(lambda: temps.get_subscription_count() > 0, 10, "the manager to subscribe to temperature")
    stop = threading.Event()
    thread = _keep_publishing(temps, lambda: reading("CPU-therm", 50.0), 0.1, stop)  # a live, cool zone
    try:
        probe.wait_for(lambda: [v for _, v in _diag(probe) if v["temperature_zones"] == "1"], 5, "the live zone")
        t0 = time.monotonic()
        temps.publish(reading("CPU-therm", 150.0))   # one outlier on the live zone
        temps.publish(reading("SOC0-therm", 150.0))  # one reading from a zone nobody refreshes
        time.sleep(1.5)
        seen = _diag(probe, since=t0)
        assert seen and all(v["cap_cpu"] == "1.00" and v["cap_gpu"] == "1.00" for _, v in seen), \
            [(v["cap_cpu"], v["cap_gpu"]) for _, v in seen]
        assert seen[-1][1]["temperature_zones"] == "1", "the unrefreshed zone was not pruned"
        # confirmed (two readings) it caps at once; unrefreshed it expires and the cap recovers
        t1 = time.monotonic()
        temps.publish(reading("GPU-therm", 150.0))
        temps.publish(reading("GPU-therm", 150.0))
        probe.wait_for(lambda: [v for _, v in _diag(probe, since=t1) if float(v["cap_gpu"]) <= 0.5], 3,
                       "the gpu capped by the confirmed reading")
        probe.wait_for(lambda: [v for _, v in _diag(probe, since=t1 + 1.0) if v["cap_gpu"] == "1.00"
                                and v["temperature_zones"] == "1"], 4, "the cap lifted once the zone expired")
        assert not [v for _, v in _diag(probe, since=t1) if "temperature" in v["stale_inputs"]]
    finally:
        stop.set()
        thread.join(2)


@ros
def test_a_flood_of_zones_is_capped_and_decisions_stay_within_budget(ros_graph, probe, tmp_path):
    from sensor_msgs.msg import Temperature
    from dynofa_ros.msg import PerformanceTarget
    _subscribe_all(probe)
    temps = probe.publisher(Temperature, "temperature", 1000)
    targets = probe.publisher(PerformanceTarget, "performance_target")
    proc = _start_manager(ros_graph, probe, tmp_path, max_temperature_zones=64, input_expiry_s=30.0)
    probe.wait_for(lambda: temps.get_subscription_count() > 0, 10, "the manager to subscribe to temperature")
    t0 = time.monotonic()
    evicted = lambda: max([int(v["temperature_zones_evicted"]) for _, v in _diag(probe, since=t0)] or [0])  # noqa: E731
    for start in range(0, 10_000, 1000):  # in bursts: what the manager cannot take, DDS drops (keep-last)
        for i in range(start, start + 1000):
            m = Temperature(temperature=40.0 + i % 50)
            m.header.frame_id = f"zone{i}"
            temps.publish(m)
        time.sleep(0.5)
        if evicted() >= 500:
            break
    time.sleep(1.0)  # what is still queued
    seen = probe.wait_for(lambda: [v for _, v in _diag(probe, since=t0) if int(v["temperature_zones_evicted"]) >= 100],
                          10, "zones evicted")
    assert all(int(v["temperature_zones"]) <= 64 for _, v in _diag(probe, since=t0))
    # uncapped, 10,000 zones took 14.7 ms a decision; capped it stays well under a millisecond (median:
    # a loaded machine may pre-empt any single decision)
    search_ms = sorted(float(v["search_ms"]) for _, v in _diag(probe, since=t0))
    assert search_ms[len(search_ms) // 2] <= 1.0, search_ms
    warnings = [ln for ln in proc.output().splitlines() if "more than 64 temperature zones" in ln]
    assert len(warnings) <= 2, warnings  # rate-limited: one per 10 s
    assert warnings and int(seen[-1]["temperature_zones"]) == 64
    # and it still serves: a retarget acts at once
    targets.publish(PerformanceTarget(workload="cam", max_latency_ms=5.0))
    probe.wait_for(lambda: _subnet(probe, "cam") in ("p1", "p2"), 5, "the retarget after the flood")


# ---------------------------------------------------------------------------------------------- restarts
def _status(workload: str, subnet: str, mode: str = "managed", **target):
    from dynofa_ros.msg import PerformanceTarget, WorkloadStatus
    return WorkloadStatus(workload=workload, active_subnet_id=subnet, latency_p50_ms=math.nan,
                          latency_p95_ms=math.nan, input_rate_hz=math.nan, output_rate_hz=math.nan,
                          control_mode=mode, target=PerformanceTarget(workload=workload, **target))


def _late_subscriber(probe, msg_type, topic: str) -> list:
    """A new transient_local subscription: what it gets at once is the latched state."""
    from dynofa_ros.nodes.qos import latched_qos
    got: list = []
    probe.node.create_subscription(msg_type, topic, got.append, latched_qos(2))
    return got


@ros
def test_restarted_manager_recovers_targets_and_decisions_are_latched(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import FrequencyDecision, PerformanceTarget, SubnetDecision, WorkloadStatus
    _subscribe_all(probe)
    targets = probe.publisher(PerformanceTarget, "performance_target")
    statuses = probe.publisher(WorkloadStatus, "workload_status")
    params = {"workloads": ["cam", "aux"], "aux.rate_hz": 1.0, "refresh_period_s": 3600.0}  # latching only
    first = _start_manager(ros_graph, probe, tmp_path, **params)
    targets.publish(PerformanceTarget(workload="cam", max_latency_ms=5.0))
    probe.wait_for(lambda: _subnet(probe, "cam") in ("p1", "p2"), 5, "the decision for the 5 ms target")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(10)

    t0 = time.monotonic()
    second = ros_graph.start("resource_manager_node", parameters={
        "operating_points": _table(tmp_path), "cam.max_latency_ms": 18.0, "diagnostics_period_s": 0.2,
        "min_dwell_s": 0.2, **XAVIER, **params})
    probe.wait_for(lambda: [m for m in probe.since("subnet_decision", t0) if m.workload == "cam"], 60,
                   "the restarted manager's first decision")
    assert _subnet(probe, "cam") == "p5", "the restart starts from its parameters (18 ms)"
    # the perception node still holds the 5 ms target and reports it: the restarted manager adopts it
    probe.wait_for(lambda: statuses.get_subscription_count() > 0, 10, "the manager to subscribe to status")
    statuses.publish(_status("cam", "p5", max_latency_ms=5.0))
    probe.wait_for(lambda: _subnet(probe, "cam") in ("p1", "p2"), 5, "the recovered 5 ms target respected")
    assert "recovered target of cam" in second.output()
    # a late subscriber gets the latest decision of every workload, and the frequencies, from the latch
    late = _late_subscriber(probe, SubnetDecision, "subnet_decision")
    late_freq = _late_subscriber(probe, FrequencyDecision, "frequency_decision")
    probe.wait_for(lambda: {m.workload for m in late} == {"cam", "aux"} and late_freq, 5, "latched decisions")
    latest = {m.workload: m.subnet_id for m in late}
    assert latest["cam"] in ("p1", "p2") and latest["aux"] == "p5", latest
    # an explicit target outranks what a status reports
    targets.publish(PerformanceTarget(workload="cam", max_latency_ms=18.0))
    probe.wait_for(lambda: _subnet(probe, "cam") == "p5", 15, "the explicit 18 ms target")
    statuses.publish(_status("cam", "p5", max_latency_ms=5.0))
    time.sleep(1.0)
    assert _subnet(probe, "cam") == "p5" and second.output().count("recovered target") == 1


@ros
def test_manual_workload_gets_no_decisions_re_published(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import WorkloadStatus
    _subscribe_all(probe)
    statuses = probe.publisher(WorkloadStatus, "workload_status")
    _start_manager(ros_graph, probe, tmp_path, workloads=["cam", "aux"], refresh_period_s=0.2, **{"aux.rate_hz": 1.0})
    probe.wait_for(lambda: statuses.get_subscription_count() > 0, 10, "the manager to subscribe to status")
    statuses.publish(_status("cam", "p0", mode="manual"))  # someone set cam's subnet_id by hand
    probe.wait_for(lambda: [s for s, _ in _diag(probe, "workload cam")
                            if s.message == "manual (decisions ignored by the node)"], 5, "cam shown as manual")
    time.sleep(0.3)  # a decision already in flight
    t0 = time.monotonic()
    time.sleep(1.5)  # seven refresh periods
    after = probe.since("subnet_decision", t0)
    assert not [m for m in after if m.workload == "cam"], "a decision re-published for a manual workload"
    assert len([m for m in after if m.workload == "aux"]) >= 3, "the managed workload stopped being refreshed"
    values = _diag(probe, "workload cam")[-1][1]
    assert values["control_mode"] == "manual" and values["subnet_id"] == "p5"  # it keeps deciding
    t1 = time.monotonic()
    statuses.publish(_status("cam", "p0", mode="managed"))
    probe.wait_for(lambda: [m for m in probe.since("subnet_decision", t1) if m.workload == "cam"], 2,
                   "cam's decision once it is managed again")


# ---------------------------------------------------------------------------------------------- parameters
def _profile(tmp_path, levels: str) -> str:
    """generic_x86 with its domain's levels replaced (or the file broken, for levels='{broken')."""
    from conftest import REPO
    text = (REPO / "config" / "devices" / "generic_x86.yaml").read_text()
    start = text.index("levels_khz: [")
    end = text.index("]}", start) + 1
    path = tmp_path / "profile.yaml"
    path.write_text(text[:start] + f"levels_khz: {levels}" + text[end:])
    return str(path)


BAD_STARTUP = {  # id -> (parameters, what the one FATAL line must say)
    "rate-zero": ({"control_rate_hz": 0.0}, "control_rate_hz must be in (0, 100]"),
    "rate-busy-loop": ({"control_rate_hz": 1e9}, "control_rate_hz must be in (0, 100]"),
    "refresh-zero": ({"refresh_period_s": 0.0}, "refresh_period_s must be in [0.01, 3600]"),
    "diagnostics-negative": ({"diagnostics_period_s": -1.0}, "diagnostics_period_s must be in"),
    "expiry-zero": ({"input_expiry_s": 0.0}, "input_expiry_s must be in"),
    "budget-zero": ({"time_budget_ms": 0.0}, "time_budget_ms must be in (0, 1000]"),
    "latency-stat": ({"latency_stat": "p99"}, "latency_stat must be one of ['p95', 'median'], got 'p99'"),
    "empty-name": ({"workloads": [""]}, "workloads: '' is not a name"),
    "no-workloads": ({"workloads": []}, "workloads"),
    "too-many-workloads": ({"workloads": [f"w{i}" for i in range(17)]}, "workloads must list 1..16 names, got 17"),
    "negative-target": ({"front_camera.max_latency_ms": -1.0},
                        "parameter front_camera: max_latency_ms must be >= 0"),
    "rate-hz": ({"front_camera.rate_hz": 1e9}, "front_camera.rate_hz must be in [0, 1000]"),
    "profile-yaml": ("{broken", "not valid YAML"),
    "profile-no-levels": ("[]", "needs at least one level"),
    "profile-zero-hz": ("[0, 1000000]", "needs at least one level, all > 0 Hz"),
}


@ros
@pytest.mark.parametrize("case", sorted(BAD_STARTUP))
def test_bad_parameter_is_one_fatal_line_and_exit_1(ros_graph, tmp_path, case):
    parameters, expected = BAD_STARTUP[case]
    if isinstance(parameters, str):
        parameters = {"device_profile": _profile(tmp_path, parameters)}
    proc = ros_graph.start("resource_manager_node", name=NODE, parameters=parameters)
    code = proc.process.wait(60)
    out = proc.output()
    fatal = [line for line in out.splitlines() if "[FATAL]" in line]
    assert code == 1, out[-2000:]
    assert len(fatal) == 1 and "cannot start" in fatal[0] and expected in fatal[0], out[-2000:]
    assert "Traceback" not in out, out[-2000:]


def _set_atomically(probe, values: dict):
    from rcl_interfaces.srv import SetParametersAtomically
    from rclpy.parameter import Parameter
    request = SetParametersAtomically.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return probe.call(SetParametersAtomically, f"/{NODE}/set_parameters_atomically", request).result


def _get(probe, name: str):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    reply = probe.call(GetParameters, f"/{NODE}/get_parameters", GetParameters.Request(names=[name]))
    return parameter_value_to_python(reply.values[0])


@ros
def test_parameter_sets_apply_all_or_nothing_with_the_reason(ros_graph, probe, tmp_path):
    _subscribe_all(probe)
    _start_manager(ros_graph, probe, tmp_path)
    # a valid target beside an invalid value: the whole set fails, nothing of it takes effect
    r = _set_atomically(probe, {"cam.max_latency_ms": 5.0, "min_dwell_s": -1.0})
    assert not r.successful and "min_dwell_s must be in [0, 3600]" in r.reason, r.reason
    for values, reason in (({"cam.max_latency_ms": float("inf")}, "max_latency_ms must be finite"),
                           ({"cam.max_latency_ms": 5.0, "cam.min_accuracy": 1.5}, "min_accuracy is a fraction"),
                           ({"up_margin": float("nan")}, "up_margin must be in"),
                           ({"time_budget_ms": 0.0}, "time_budget_ms must be in (0, 1000]")):
        r = _set_atomically(probe, values)
        assert not r.successful and reason in r.reason, (values, r.reason)
    time.sleep(1.0)
    assert _subnet(probe, "cam") == "p5", "a failed set changed the decision"
    assert _get(probe, "cam.max_latency_ms") == 18.0 and _get(probe, "min_dwell_s") == 0.2
    r = _set_atomically(probe, {"cam.max_latency_ms": 5.0, "min_dwell_s": 0.5})
    assert r.successful, r.reason
    probe.wait_for(lambda: _subnet(probe, "cam") in ("p1", "p2"), 5, "the decision after the valid set")
    # 0 is "no constraint"
    assert _set_atomically(probe, {"cam.max_latency_ms": 0.0}).successful
    probe.wait_for(lambda: _subnet(probe, "cam") == "p5", 15, "no latency constraint")


@ros
def test_unknown_names_and_huge_strings_cannot_amplify_the_log(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import PerformanceTarget, WorkloadStatus
    _subscribe_all(probe)
    targets = probe.publisher(PerformanceTarget, "performance_target", 100)
    statuses = probe.publisher(WorkloadStatus, "workload_status", 100)
    proc = _start_manager(ros_graph, probe, tmp_path)
    probe.wait_for(lambda: targets.get_subscription_count() > 0, 10, "the manager to subscribe")
    huge = "g" * (1 << 20)
    targets.publish(PerformanceTarget(workload=huge, max_latency_ms=1.0))
    for i in range(2000):
        targets.publish(PerformanceTarget(workload=f"ghost{i}", max_latency_ms=1.0))
        statuses.publish(_status(f"ghost{i}", "p0"))
    statuses.publish(_status("cam", "p5", mode="x" * 100_000))
    probe.wait_for(lambda: "unknown control_mode" in proc.output(), 10, "the unknown control mode warned")
    lines = [ln for ln in proc.output().splitlines() if "[WARN]" in ln]
    assert len(lines) <= 4, lines  # one per kind: unknown target, unknown status, unknown mode
    assert max(len(ln) for ln in lines) < 400, max(len(ln) for ln in lines)
    # and it still serves
    targets.publish(PerformanceTarget(workload="cam", max_latency_ms=5.0))
    probe.wait_for(lambda: _subnet(probe, "cam") in ("p1", "p2"), 5, "the retarget after the flood of names")


# ---------------------------------------------------------------------------------------------- inputs.py
def test_platform_inputs_expire_and_name_the_stale_ones():
    from dynofa_ros.manager.inputs import PlatformInputs
    inp = PlatformInputs(expiry_s=3.0)
    assert inp.snapshot(0.0).stale == ()  # never received: unknown, not stale
    inp.on_load([90.0] * 4, math.nan, 100.0, 1000.0, now=0.0)
    inp.on_battery(35.0, False, now=0.0)
    inp.on_battery(math.nan, True, now=2.0)
    s = inp.snapshot(2.9)
    assert s.cpu_percent == (90.0,) * 4 and s.stale == () and math.isnan(s.battery_percent) and s.charging
    s = inp.snapshot(3.1)
    assert s.cpu_percent == () and math.isnan(s.memory_used_mb) and s.stale == ("load",)
    assert inp.ages(3.1)["load"] == pytest.approx(3.1)
    s = inp.snapshot(5.1)
    assert s.stale == ("load", "battery") and not s.charging
    v = inp.version
    inp.snapshot(6.0)
    assert inp.version == v, "nothing new expired: the policy need not be told again"
    inp.on_load([10.0], 0.0, 1.0, 2.0, now=6.0)
    assert inp.snapshot(6.0).stale == ("battery",) and inp.version > v


def test_a_temperature_counts_once_confirmed_and_zones_are_capped():
    from dynofa_ros.manager.inputs import PlatformInputs
    inp = PlatformInputs(expiry_s=1.0, max_zones=3)
    assert inp.on_temperature("CPU-therm", 150.0, now=0.0)
    assert inp.snapshot(0.0).temperatures_c == {}, "one reading is not confirmed"
    inp.on_temperature("CPU-therm", 50.0, now=0.1)
    inp.on_temperature("CPU-therm", 51.0, now=0.2)
    assert inp.snapshot(0.2).temperatures_c == {"CPU-therm": 51.0}, "an outlier among three: the median"
    inp.on_temperature("CPU-therm", 52.0, now=0.3)
    assert inp.snapshot(0.3).temperatures_c == {"CPU-therm": 51.0}
    assert not inp.on_temperature("GPU-therm", math.nan, now=0.3) and not inp.on_temperature("x", -300.0, now=0.3)
    for i, zone in enumerate(("a", "b", "c")):  # a fourth zone evicts the least recently updated
        inp.on_temperature(zone, 40.0, now=0.4 + i / 10)
    assert inp.zone_count() == 3 and inp.zones_evicted == 1 and "CPU-therm" not in inp.snapshot(0.7).temperatures_c
    inp.on_temperature("z" * 10_000, 40.0, now=0.7)
    assert max(len(z) for z in inp._zones) == 64
    assert inp.snapshot(2.0).temperatures_c == {} and inp.zone_count() == 0
    assert inp.snapshot(2.0).stale == ("temperature",)


def test_warning_limiter_and_parameter_checks():
    from dynofa_ros.bounds import Bound
    from dynofa_ros.manager.inputs import WarningLimiter, check_choice, check_names
    lim = WarningLimiter(period_s=10.0, cap=2)
    assert lim.allow("a", 0.0) == 0 and lim.allow("a", 1.0) is None and lim.allow("a", 2.0) is None
    assert lim.allow("a", 10.5) == 2, "the next warning says how many were held back"
    lim.allow("b", 11.0)
    assert not lim.cap_notice()
    lim.allow("c", 11.0)
    assert lim.cap_notice() and not lim.cap_notice() and len(lim._last) == 2
    b = Bound(0.0, 100.0, lo_open=True)
    assert b.check("r", 10) == 10.0
    for bad in (0.0, -1.0, 1e9, math.nan, math.inf, True, "fast"):
        with pytest.raises(ValueError, match=r"r must be"):
            b.check("r", bad)
    with pytest.raises(ValueError, match=r"one of \['p95', 'median'\], got 'p99'"):
        check_choice("latency_stat", "p99", ("p95", "median"))
    assert check_names("w", ["cam", "aux"], 4) == ["cam", "aux"]
    for bad in ([], ["a"] * 5, ["a", "a"], ["bad name"], ["x" * 65]):
        with pytest.raises(ValueError):
            check_names("w", bad, 4)


def test_a_status_target_is_adopted_only_without_an_explicit_one():
    from dynofa_ros.manager.inputs import WorkloadInputs
    from dynofa_ros.targets import Target
    book = WorkloadInputs(["cam"], expiry_s=1.0)
    assert not book.should_adopt("cam", Target(), Target(18.0)), "an all-zero target carries nothing"
    assert not book.should_adopt("cam", Target(18.0), Target(18.0))
    assert book.should_adopt("cam", Target(5.0), Target(18.0))
    book.set_explicit("cam")
    assert not book.should_adopt("cam", Target(5.0), Target(18.0))
    assert book.on_status("cam", "manual", 0.0) and book.manual("cam")
    assert not book.on_status("cam", "bogus", 0.5) and book.mode("cam") == "managed"
    assert book.on_status("cam", "", 0.6) and not book.stale("cam", 1.5) and book.stale("cam", 1.7)
    assert book.age("nobody", 0.0) == math.inf
