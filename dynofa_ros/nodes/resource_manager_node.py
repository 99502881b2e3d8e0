"""Runtime resource manager node: feeds targets, platform state and workload status into the ROS-free
`ResourcePolicy` and publishes its sub-network and frequency decisions.

A managed (lifecycle) node: parameters are declared and checked at construction and on configure (a bad
one is a clear error, never a silent default), `configure` loads the device profile and the tables and
creates the policy, publishers, subscriptions and timers, `activate` starts deciding and publishing,
`deactivate` stops, `cleanup` frees (`autostart`, the default, runs configure + activate).

Decisions are recomputed on every input message (a tighter target or a load spike acts at once), on a
control timer (so expired inputs take effect without new messages), and after a parameter change. They are
latched (transient_local) and published when they change and every `refresh_period_s`. Every input keeps
its receive time (`manager/inputs.py`): stale ones are pruned, named to the policy and shown in
/diagnostics. A restarted manager recovers each workload's target from its WorkloadStatus, and a workload
whose node reports `control_mode: manual` gets no decisions re-published.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros.bounds import Bound
from dynofa_ros.manager.inputs import (MAX_ZONES, PlatformInputs, WarningLimiter, WorkloadInputs,
                                       check_choice, check_names)
from dynofa_ros.manager.policy import PolicyConfig, PolicyDecision, ResourcePolicy, WorkloadFeedback
from dynofa_ros.msg import (DomainFrequency, FrequencyDecision, PerformanceTarget, PlatformLoad, SubnetDecision,
                            WorkloadStatus)
from dynofa_ros.nodes.lifecycle import ManagedNode, run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.nodes.qos import latched_qos
from dynofa_ros.operating_points import default_table_path, load_table
from dynofa_ros.platform.profiles import load_profile
from dynofa_ros.targets import FIELDS, InvalidTarget, Target, parse_target, target_from_msg
from dynofa_ros.text import clip

MAX_WORKLOADS = PolicyConfig().max_workloads
REASON_CHARS = 200  # what a log line quotes of a decision's reason
MAX_MATERIALISED = 64  # point ids one decision names as resident (a table's kept points and variants)
# numeric parameters: the one range each must lie in, at start-up and when set at run time
BOUNDS = {
    "control_rate_hz": Bound(0.0, 100.0, lo_open=True),
    "refresh_period_s": Bound(0.01, 3600.0),
    "diagnostics_period_s": Bound(0.01, 3600.0),
    "input_expiry_s": Bound(0.05, 3600.0),
    "max_temperature_zones": Bound(1, 1024),
    "memory_budget_mb": Bound(0.0, 1e9),
    "memory_reserve_mb": Bound(0.0, 1e9),
    "min_dwell_s": Bound(0.0, 3600.0),
    "up_margin": Bound(0.0, 10.0),
    "time_budget_ms": Bound(0.0, 1000.0, lo_open=True),
}
RATE_BOUND = Bound(0.0, 1000.0)  # <workload>.rate_hz (0: the policy's default)
RUNTIME_CONFIG = ("memory_budget_mb", "min_dwell_s", "up_margin", "time_budget_ms")
LATENCY_STATS = ("p95", "median")


class ResourceManagerNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__("resource_manager")
        self._declare_parameters()
        self.workload_names = check_names("workloads", self.get_parameter("workloads").value, MAX_WORKLOADS)
        for w in self.workload_names:
            self._declare_workload(w)
        self.policy: ResourcePolicy | None = None  # built by configure
        self._pubs: list = []  # what configure creates and cleanup destroys
        self._subs: list = []
        self._timers: list = []
        self._deciding = False  # between activate and deactivate
        self._warnings = WarningLimiter()
        self._planned: Callable[[], None] | None = None  # a validated parameter set, applied once it succeeded
        self.add_on_set_parameters_callback(self._on_parameters)
        post = getattr(self, "add_post_set_parameters_callback", None)  # newer than Humble: Humble applies in the check
        if post is not None:
            post(self._after_parameters)

    def _declare_parameters(self) -> None:
        p = self.declare_parameter
        p("operating_points", "", describe("operating-point table (YAML); empty: the shipped default (share/"
                                        "dynofa_ros/config/operating_points/fmnist28_ofa_mbv3.yaml)", read_only=True))
        p("workloads", ["front_camera"], describe(f"workload names managed (match perception nodes' `workload`), "
                                               f"1..{MAX_WORKLOADS} identifiers", read_only=True))
        p("device_key", "cpu", describe("table device key the workloads run on (cpu, cuda, cpu@2t, ...); per "
                                     "workload override: <workload>.device_key", read_only=True))
        p("device_profile", "generic_x86", describe("device profile name in config/devices or a YAML path: "
                                                 "DVFS domains + modelled power", read_only=True))
        p("dry_run", True, describe("label frequency decisions as dry runs (actuators write nothing); the policy "
                                 "then assumes the hardware stays at its maximum frequency"))
        p("memory_budget_mb", 0.0, describe("resident memory for materialised sub-networks of all workloads "
                                         "together, MiB; 0 = unlimited"))
        p("memory_reserve_mb", 256.0, describe("keep this much of the machine's memory free (from platform_load): "
                                            "the materialised set shrinks when the machine runs short", read_only=True))
        p("control_rate_hz", 10.0, describe("control-loop rate, (0, 100] Hz (decisions are also made on every "
                                         "input)", read_only=True))
        p("refresh_period_s", 2.0, describe("re-publish unchanged decisions this often, s", read_only=True))
        p("diagnostics_period_s", 1.0, describe("/diagnostics publishing period, s", read_only=True))
        p("input_expiry_s", 3.0, describe("load, temperature, battery and status readings older than this are "
                                       "dropped and reported stale, s", read_only=True))
        p("max_temperature_zones", MAX_ZONES, describe("temperature zones tracked (least recently updated "
                                                    "dropped beyond this)", read_only=True))
        p("min_dwell_s", 1.0, describe("no non-urgent switch sooner than this after the last one, s"))
        p("up_margin", 0.10, describe("latency headroom a slower point needs before switching up (fraction)"))
        p("time_budget_ms", 5.0, describe("decision search time bound, ms"))
        p("latency_stat", "p95", describe("latency statistic judged against max_latency_ms and fed back from "
                                       "WorkloadStatus: p95 (deadline-like) or median", read_only=True))

    def _declare_workload(self, w: str) -> None:
        p = self.declare_parameter
        p(f"{w}.max_latency_ms", 0.0, describe(f"{w}: latency bound ms (0 = none)"))
        p(f"{w}.min_accuracy", 0.0, describe(f"{w}: minimum top-1 fraction 0..1 (0 = none)"))
        p(f"{w}.max_energy_mj", 0.0, describe(f"{w}: energy per inference mJ (0 = none)"))
        p(f"{w}.priority", 0, describe(f"{w}: 0..255, higher keeps its target when not all fit"))
        p(f"{w}.device_key", "", describe(f"{w}: device key override (empty: device_key)", read_only=True))
        p(f"{w}.operating_points", "", describe(f"{w}: table override (empty: operating_points)", read_only=True))
        p(f"{w}.rate_hz", 0.0, describe(f"{w}: frame rate assumed until its status reports one (0: 30 Hz)",
                                     read_only=True))

    def _value(self, name: str):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------------------------------ lifecycle
    def configure(self) -> None:
        """Check every parameter, load the device profile and the tables, build the policy, create the
        topics and timers (ValueError naming the parameter when one is out of range)."""
        num = {name: bound.check(name, self._value(name)) for name, bound in BOUNDS.items()}
        latency_stat = check_choice("latency_stat", self._value("latency_stat"), LATENCY_STATS)
        targets = {w: self._parameter_target(w) for w in self.workload_names}
        rates = {w: RATE_BOUND.check(f"{w}.rate_hz", self._value(f"{w}.rate_hz")) for w in self.workload_names}
        profile = load_profile(self._value("device_profile"))
        self.dry_run = bool(self._value("dry_run"))
        cfg = PolicyConfig(memory_budget_mb=num["memory_budget_mb"], memory_reserve_mb=num["memory_reserve_mb"],
                           min_dwell_s=num["min_dwell_s"], up_margin=num["up_margin"],
                           time_budget_ms=num["time_budget_ms"], frequency_applied=not self.dry_run,
                           throttle_c=profile.thermal.throttle_c, latency_stat=latency_stat)
        self.policy = self._build_policy(ResourcePolicy(profile.domains, cfg), targets, rates)
        self.get_logger().info(f"managing {self.workload_names} with profile {profile.name} (modelled power), "
                               f"dry_run={self.dry_run}")
        self.inputs = PlatformInputs(num["input_expiry_s"], int(num["max_temperature_zones"]))
        self.workloads = WorkloadInputs(self.workload_names, num["input_expiry_s"])
        self._platform_version = -1
        self._last_subnet: dict[str, tuple[str, tuple[str, ...]]] = {}  # published (point, resident set)
        self._last_freq: tuple = ()
        self._last_refresh = -math.inf
        self._decision: PolicyDecision | None = None
        self.refresh_period = num["refresh_period_s"]
        self._create_io(num["control_rate_hz"], num["diagnostics_period_s"])

    def _parameter_target(self, w: str) -> Target:
        try:
            return parse_target(*(self._value(f"{w}.{f}") for f in FIELDS))
        except InvalidTarget as exc:
            raise ValueError(f"parameter {w}: {exc}") from None

    def _build_policy(self, policy: ResourcePolicy, targets: dict[str, Target],
                      rates: dict[str, float]) -> ResourcePolicy:
        default_table = self._value("operating_points") or str(default_table_path())
        tables = {}
        for w in self.workload_names:
            path = self._value(f"{w}.operating_points") or default_table
            if path not in tables:
                tables[path] = load_table(path)
            policy.add_workload(w, tables[path], self._value(f"{w}.device_key") or self._value("device_key"),
                                targets[w], rate_hz=rates[w])
        self.get_logger().info(f"operating-point tables {sorted(tables)}")
        return policy

    def _create_io(self, control_rate_hz: float, diagnostics_period_s: float) -> None:
        latched = latched_qos(len(self.workload_names))
        self.pub_subnet = self.create_lifecycle_publisher(SubnetDecision, "subnet_decision", latched)
        self.pub_freq = self.create_lifecycle_publisher(FrequencyDecision, "frequency_decision", latched)
        self.pub_diag = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        sub = self.create_subscription
        self._subs = [sub(PerformanceTarget, "performance_target", self._on_target, 10),
                      sub(BatteryState, "battery_state", self._on_battery, 10),
                      sub(Temperature, "temperature", self._on_temperature, 50),
                      sub(PlatformLoad, "platform_load", self._on_load, 10),
                      sub(WorkloadStatus, "workload_status", self._on_status, 10)]
        self._timers = [self.create_timer(1.0 / control_rate_hz, lambda: self._step("timer")),
                        self.create_timer(diagnostics_period_s, self._publish_diagnostics)]
        for t in self._timers:
            t.cancel()  # ticking starts on activate
        self._pubs = [self.pub_subnet, self.pub_freq, self.pub_diag]

    def activate(self) -> None:
        self._deciding = True
        for t in self._timers:
            t.reset()
        self._step("activate")

    def deactivate(self) -> None:
        self._deciding = False
        for t in self._timers:
            t.cancel()

    def cleanup(self) -> None:
        """Destroy what configure created; safe to call twice or when never configured."""
        self._deciding = False
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._pubs, self._subs, self._timers = [], [], []
        self.policy = None

    # ------------------------------------------------------------------------------------------ inputs
    def _known(self, name: str, what: str) -> bool:
        """A configured workload; otherwise a rate-limited warning (names from the wire are never stored)."""
        if name in self.workload_names:
            return True
        self._warn(f"unknown {what}", f"ignoring {what} for unknown workload {clip(name)!r}; configured: "
                                      f"{self.workload_names}")
        return False

    def _on_target(self, msg: PerformanceTarget) -> None:
        if not self._known(msg.workload, "performance target"):
            return
        try:
            target = target_from_msg(msg)
        except InvalidTarget as exc:
            self._warn(f"target:{msg.workload}", f"rejected performance target for {msg.workload}: {exc}; keeping "
                                                 f"{self.policy.target(msg.workload)}")
            return
        self.workloads.set_explicit(msg.workload)
        self.policy.set_target(msg.workload, target)
        self.get_logger().info(f"retarget {msg.workload}: {target}")
        self._step(f"target {msg.workload}")

    def _on_battery(self, msg: BatteryState) -> None:
        charging = msg.power_supply_status in (BatteryState.POWER_SUPPLY_STATUS_CHARGING,
                                               BatteryState.POWER_SUPPLY_STATUS_FULL)
        self.inputs.on_battery(msg.percentage * 100.0, charging, time.monotonic())
        self._step("battery")

    def _on_temperature(self, msg: Temperature) -> None:
        evicted = self.inputs.zones_evicted
        if not self.inputs.on_temperature(msg.header.frame_id, msg.temperature, time.monotonic()):
            self._warn("temperature", f"ignoring temperature {msg.temperature!r} C from {clip(msg.header.frame_id)!r}")
            return
        if self.inputs.zones_evicted > evicted:
            self._warn("zones", f"more than {self.inputs.max_zones} temperature zones: the least recently "
                                f"updated are dropped ({self.inputs.zones_evicted} so far)")
        self._step("temperature")

    def _on_load(self, msg: PlatformLoad) -> None:
        self.inputs.on_load(msg.cpu_percent, msg.gpu_percent, msg.memory_used_bytes / 2**20,
                            msg.memory_total_bytes / 2**20, time.monotonic())
        self._step("load")

    def _on_status(self, msg: WorkloadStatus) -> None:
        name = msg.workload
        if not self._known(name, "workload status"):
            return
        now = time.monotonic()
        was_manual = self.workloads.manual(name)
        if not self.workloads.on_status(name, msg.control_mode, now):
            self._warn(f"mode:{name}", f"{name}: unknown control_mode {clip(msg.control_mode)!r}, taken as managed")
        if self.workloads.manual(name) != was_manual:
            self.get_logger().info(f"{name}: control_mode {self.workloads.mode(name)}"
                                   + (" (decisions ignored by the node: not re-published)" if not was_manual else ""))
            self._last_subnet.pop(name, None)  # back to managed: publish the current decision at once
        self._adopt_target(name, msg.target)
        fb = WorkloadFeedback(msg.active_subnet_id, float(msg.latency_p50_ms), float(msg.latency_p95_ms),
                              float(msg.input_rate_hz), float(msg.output_rate_hz))
        self.policy.update_feedback(name, fb, now)
        self._step("status")

    def _adopt_target(self, name: str, reported: PerformanceTarget) -> None:
        """Restart recovery: a workload's reported target is adopted while the manager holds no explicit one."""
        try:
            target = target_from_msg(reported)
        except InvalidTarget as exc:
            self._warn(f"status-target:{name}", f"{name}: ignoring the target in its status: {exc}")
            return
        if self.workloads.should_adopt(name, target, self.policy.target(name)):
            self.workloads.set_explicit(name)
            self.policy.set_target(name, target)
            self.get_logger().info(f"recovered target of {name} from its workload_status: {target}")

    def _warn(self, key: str, text: str) -> None:
        """One warning per key per 10 s (keys: a kind of problem, or one per configured workload)."""
        held = self._warnings.allow(key, time.monotonic())
        if held is not None:
            self.get_logger().warning(text + (f" ({held} similar held back)" if held else ""))
        if self._warnings.cap_notice():
            self.get_logger().warning(f"more than {self._warnings.cap} distinct warnings: the oldest are "
                                      "forgotten (and may repeat)")

    # ------------------------------------------------------------------------------------------ parameters
    def _on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Check the whole set (NaN, inf, negative and out-of-range values rejected with the reason) and plan
        its effects; nothing changes until rclpy has accepted every parameter of the set."""
        self._planned = None
        fields: dict[str, dict[str, object]] = {}
        config: dict[str, object] = {}
        try:
            for prm in params:
                w, _, f = prm.name.rpartition(".")
                if w in self.workload_names and f in FIELDS:
                    fields.setdefault(w, {})[f] = prm.value
                elif prm.name in RUNTIME_CONFIG:
                    config[prm.name] = BOUNDS[prm.name].check(prm.name, prm.value)
                elif prm.name == "dry_run":
                    config["dry_run"] = bool(prm.value)
            targets = {w: self._merged_target(w, f) for w, f in fields.items()}
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._planned = lambda: self._apply(targets, config)
        if not hasattr(self, "add_post_set_parameters_callback"):  # Humble: no post-set callback
            self._after_parameters(params)
        return SetParametersResult(successful=True)

    def _merged_target(self, w: str, fields: dict[str, object]) -> Target:
        """The workload's current target with the fields being set replaced (InvalidTarget: why not)."""
        cur = self.policy.target(w) if self.policy is not None else None
        values = [fields.get(f, getattr(cur, f) if cur is not None else self._value(f"{w}.{f}")) for f in FIELDS]
        try:
            return parse_target(*values)
        except InvalidTarget as exc:
            raise InvalidTarget(f"{w}: {exc}") from None

    def _after_parameters(self, params: list[Parameter]) -> None:
        planned, self._planned = self._planned, None
        if planned is not None:
            planned()

    def _apply(self, targets: dict[str, Target], config: dict[str, object]) -> None:
        if self.policy is None:
            return  # unconfigured: configure reads the stored values
        for w, t in targets.items():
            self.workloads.set_explicit(w)
            self.policy.set_target(w, t)
            self.get_logger().info(f"retarget {w} (parameter): {t}")
        for name, v in config.items():
            if name == "dry_run":
                self.dry_run = bool(v)
                self.policy.config.frequency_applied = not v
            else:
                setattr(self.policy.config, name, v)
        if targets or config:
            self._step("parameters")

    # ------------------------------------------------------------------------------------------ decide
    def _step(self, why: str) -> None:
        if not self._deciding:
            return  # configured but inactive: inputs are kept, nothing is decided or published
        now = time.monotonic()
        state = self.inputs.snapshot(now)  # prunes expired readings
        if self.inputs.version != self._platform_version:
            self._platform_version = self.inputs.version
            self.policy.update_platform(state)
        d = self.policy.decide(now)
        self._decision = d
        refresh = now - self._last_refresh >= self.refresh_period
        if refresh:
            self._last_refresh = now
        self._publish_subnets(d, why, refresh)
        self._publish_frequencies(d, refresh)

    def _publish_subnets(self, d: PolicyDecision, why: str, refresh: bool) -> None:
        """All managed workloads' decisions together when any changed (so the latched history of depth
        >= workloads always holds each one's latest), and on refresh; none for manual workloads."""
        managed = {n: c for n, c in d.subnets.items() if not self.workloads.manual(n)}
        resident = {n: d.materialised.get(n, [])[:MAX_MATERIALISED] for n in managed}
        changed = [n for n, c in managed.items() if self._last_subnet.get(n) != (c.subnet_id, tuple(resident[n]))]
        if not (changed or refresh):
            return
        stamp = self.get_clock().now().to_msg()
        for name, c in managed.items():
            if name in changed and self._last_subnet.get(name, ("",))[0] != c.subnet_id:
                self.get_logger().info(f"[{why}] {name} -> {c.subnet_id} ({clip(c.reason, REASON_CHARS)}"
                                       f"{'; ' + clip(c.status, REASON_CHARS) if c.status else ''})")
            self._last_subnet[name] = (c.subnet_id, tuple(resident[name]))
            m = SubnetDecision(workload=name, subnet_id=c.subnet_id, architecture=c.point.architecture,
                               graph_variant=c.point.graph_variant, expected_latency_ms=float(c.expected_latency_ms),
                               expected_accuracy=float(c.point.accuracy), expected_memory_mb=float(c.point.memory_mb),
                               materialised=list(resident[name]),
                               reason=c.reason + (f"; not met: {c.status}" if c.status else ""))
            m.header.stamp = stamp
            self.pub_subnet.publish(m)

    def _publish_frequencies(self, d: PolicyDecision, refresh: bool) -> None:
        key = tuple((f.domain, f.frequency_hz) for f in d.frequencies) + (self.dry_run,)
        if not (refresh or key != self._last_freq):
            return
        self._last_freq = key
        m = FrequencyDecision(domains=[DomainFrequency(domain=f.domain, frequency_hz=int(f.frequency_hz),
                                                       governor=f.governor) for f in d.frequencies],
                              reason="; ".join(sorted({f.reason for f in d.frequencies})), dry_run=self.dry_run)
        m.header.stamp = self.get_clock().now().to_msg()
        self.pub_freq.publish(m)

    # ------------------------------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        d = self._decision
        if d is None:
            return
        now = time.monotonic()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(self._manager_status(d, now))
        arr.status += [self._workload_status(name, c, d, now) for name, c in d.subnets.items()]
        self.pub_diag.publish(arr)

    def _manager_status(self, d: PolicyDecision, now: float) -> DiagnosticStatus:
        kv = lambda k, v: KeyValue(key=k, value=str(v))  # noqa: E731
        stale = self.inputs.stale(now)
        ages = self.inputs.ages(now)
        s = DiagnosticStatus(name="dynofa_ros: resource_manager", hardware_id="dynofa_ros")
        problems = [f"stale inputs: {', '.join(f'{n} ({ages[n]:.1f} s old)' for n in stale)}"] if stale else []
        problems += ["search truncated at time budget"] if d.truncated else []
        s.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        s.message = "; ".join([f"{d.mode} mode", *problems])
        s.values = [kv("mode", d.mode), kv("search_ms", f"{d.search_ms:.3f}"), kv("dry_run", self.dry_run),
                    kv("cpu_background_load", f"{self.policy.background_load('cpu'):.2f}"),
                    kv("gpu_background_load", f"{self.policy.background_load('gpu'):.2f}"),
                    kv("power_model", "modelled"), kv("stale_inputs", ",".join(stale)),
                    kv("temperature_zones", self.inputs.zone_count()),
                    kv("temperature_zones_evicted", self.inputs.zones_evicted)]
        s.values += [kv(f"age_{n}_s", f"{a:.2f}") for n, a in sorted(ages.items())]
        s.values += [kv(f"cap_{k}", f"{v:.2f}") for k, v in d.caps.items()]
        s.values += [kv(f"freq_{f.domain}_hz", f.frequency_hz) for f in d.frequencies]
        return s

    def _workload_status(self, name: str, c, d: PolicyDecision, now: float) -> DiagnosticStatus:
        kv = lambda k, v: KeyValue(key=k, value=str(v))  # noqa: E731
        s = DiagnosticStatus(name=f"dynofa_ros: workload {name}", hardware_id="dynofa_ros")
        age = self.workloads.age(name, now)
        if self.workloads.manual(name):
            s.level, s.message = DiagnosticStatus.OK, "manual (decisions ignored by the node)"
        elif self.workloads.stale(name, now):
            s.level, s.message = DiagnosticStatus.WARN, f"no workload_status for {age:.1f} s"
        elif c.target_met:
            s.level, s.message = DiagnosticStatus.OK, "target met (predicted)"
        else:
            s.level, s.message = DiagnosticStatus.WARN, f"target not met: {clip(c.status, REASON_CHARS)}"
        t = self.policy.target(name)
        s.values = [kv("subnet_id", c.subnet_id), kv("graph_variant", c.point.graph_variant),
                    kv("reason", clip(c.reason, REASON_CHARS)), kv("control_mode", self.workloads.mode(name)),
                    kv("status_age_s", f"{age:.2f}"), kv("expected_latency_ms", f"{c.expected_latency_ms:.2f}"),
                    kv("expected_energy_mj_modelled", f"{c.expected_energy_mj:.2f}"),
                    kv("feedback_ratio", f"{self.policy.feedback_ratio(name):.2f}"),
                    kv("materialised", ",".join(d.materialised.get(name, []))),
                    *(kv(f"target_{f}", getattr(t, f)) for f in FIELDS)]
        return s


def main(args: list[str] | None = None) -> None:
    run_node(ResourceManagerNode, "resource_manager", args)


if __name__ == "__main__":
    main()
