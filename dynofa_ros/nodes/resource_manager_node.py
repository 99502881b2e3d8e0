"""Runtime resource manager node: feeds targets, platform state and workload status into the ROS-free
`ResourcePolicy` and publishes its sub-network and frequency decisions.

A managed (lifecycle) node: parameters are declared at construction, `configure` loads the device profile
and the tables and creates the policy, publishers, subscriptions and timers, `activate` starts deciding
and publishing, `deactivate` stops, `cleanup` frees (`autostart`, the default, runs configure + activate).

Decisions are recomputed on every input message (a tighter target or a load spike acts at once, not at
the next tick), on a control timer, and after a parameter change; they are published when they change
and re-published every `refresh_period_s` so late subscribers catch up.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros.manager.policy import (PlatformState, PolicyConfig, PolicyDecision, ResourcePolicy, Target,
                                       UnknownWorkload, WorkloadFeedback)
from dynofa_ros.nodes.lifecycle import ManagedNode, run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.msg import (DomainFrequency, FrequencyDecision, PerformanceTarget, PlatformLoad, SubnetDecision,
                            WorkloadStatus)
from dynofa_ros.operating_points import default_table_path, load_table
from dynofa_ros.platform.profiles import load_profile
from dynofa_ros.targets import InvalidTarget, parse_target, target_problem

_TARGET_FIELDS = ("max_latency_ms", "min_accuracy", "max_energy_mj", "priority")


class ResourceManagerNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__("resource_manager")
        p = self.declare_parameter
        p("operating_points", "", describe("operating-point table (YAML); empty: the shipped default "
                                        "(share/dynofa_ros/config/operating_points/fmnist_ofa_mbv3.yaml)", read_only=True))
        p("workloads", ["front_camera"], describe("workload names managed (match perception nodes' `workload`)",
                                               read_only=True))
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
        p("control_rate_hz", 10.0, describe("control-loop rate (decisions are also made on every input)",
                                         read_only=True))
        p("refresh_period_s", 2.0, describe("re-publish unchanged decisions this often", read_only=True))
        p("diagnostics_period_s", 1.0, describe("/diagnostics publishing period", read_only=True))
        p("min_dwell_s", 1.0, describe("no non-urgent switch sooner than this after the last one, s"))
        p("up_margin", 0.10, describe("latency headroom a slower point needs before switching up (fraction)"))
        p("time_budget_ms", 5.0, describe("decision search time bound, ms"))
        p("latency_stat", "p95", describe("latency statistic judged against max_latency_ms and fed back from "
                                       "WorkloadStatus: p95 (deadline-like) or median", read_only=True))
        self.workload_names: list[str] = list(self.get_parameter("workloads").value)
        for w in self.workload_names:
            p(f"{w}.max_latency_ms", 0.0, describe(f"{w}: latency bound ms (0 = none)"))
            p(f"{w}.min_accuracy", 0.0, describe(f"{w}: minimum top-1 fraction 0..1 (0 = none)"))
            p(f"{w}.max_energy_mj", 0.0, describe(f"{w}: energy per inference mJ (0 = none)"))
            p(f"{w}.priority", 0, describe(f"{w}: higher keeps its target when not all fit"))
            p(f"{w}.device_key", "", describe(f"{w}: device key override (empty: device_key)", read_only=True))
            p(f"{w}.operating_points", "", describe(f"{w}: table override (empty: operating_points)", read_only=True))
            p(f"{w}.rate_hz", 0.0, describe(f"{w}: frame rate assumed until its status reports one (0: 30 Hz)",
                                         read_only=True))

        self.policy: ResourcePolicy | None = None  # built by configure
        self._pubs: list = []  # what configure creates and cleanup destroys
        self._subs: list = []
        self._timers: list = []
        self._deciding = False  # between activate and deactivate
        self.add_on_set_parameters_callback(self._on_parameters)

    # ------------------------------------------------------------------------------------------ lifecycle
    def configure(self) -> None:
        """Load the device profile and the tables, build the policy, create the topics and timers."""
        gp = lambda n: self.get_parameter(n).value  # noqa: E731
        profile = load_profile(gp("device_profile"))
        self.dry_run = bool(gp("dry_run"))
        self.policy = self._build_policy(profile, gp)
        self.platform = PlatformState()
        self._temps: dict[str, float] = {}
        self._last_subnet: dict[str, str] = {}
        self._last_freq: tuple = ()
        self._last_refresh = time.monotonic()
        self._decision: PolicyDecision | None = None
        self._warned: set[str] = set()
        self.refresh_period = float(gp("refresh_period_s"))
        self._create_io(float(gp("control_rate_hz")), float(gp("diagnostics_period_s")))

    def _build_policy(self, profile, gp) -> ResourcePolicy:
        cfg = PolicyConfig(memory_budget_mb=float(gp("memory_budget_mb")),
                           memory_reserve_mb=float(gp("memory_reserve_mb")), min_dwell_s=float(gp("min_dwell_s")),
                           up_margin=float(gp("up_margin")), time_budget_ms=float(gp("time_budget_ms")),
                           frequency_applied=not self.dry_run, throttle_c=profile.thermal.throttle_c,
                           latency_stat=str(gp("latency_stat")))
        if cfg.latency_stat not in ("p95", "median"):
            raise ValueError(f"latency_stat must be 'p95' or 'median', got {cfg.latency_stat!r}")
        policy = ResourcePolicy(profile.domains, cfg)
        default_table = gp("operating_points") or str(default_table_path())
        tables = {}
        for w in self.workload_names:
            path = gp(f"{w}.operating_points") or default_table
            if path not in tables:
                tables[path] = load_table(path)
            t = Target(*(float(gp(f"{w}.{f}")) for f in _TARGET_FIELDS[:3]), int(gp(f"{w}.priority")))
            problem = target_problem(t.max_latency_ms, t.min_accuracy, t.max_energy_mj, t.priority)
            if problem:
                raise ValueError(f"parameter {w}: {problem}")
            policy.add_workload(w, tables[path], gp(f"{w}.device_key") or gp("device_key"), t,
                                rate_hz=float(gp(f"{w}.rate_hz")))
        self.get_logger().info(f"managing {self.workload_names} with profile {profile.name} (modelled power), "
                               f"tables {sorted(tables)}, dry_run={self.dry_run}")
        return policy

    def _create_io(self, control_rate_hz: float, diagnostics_period_s: float) -> None:
        pub = self.create_lifecycle_publisher
        self.pub_subnet = pub(SubnetDecision, "subnet_decision", 10)
        self.pub_freq = pub(FrequencyDecision, "frequency_decision", 10)
        self.pub_diag = pub(DiagnosticArray, "/diagnostics", 10)
        sub = self.create_subscription
        subs = [sub(PerformanceTarget, "performance_target", self._on_target, 10),
                sub(BatteryState, "battery_state", self._on_battery, 10),
                sub(Temperature, "temperature", self._on_temperature, 50),
                sub(PlatformLoad, "platform_load", self._on_load, 10),
                sub(WorkloadStatus, "workload_status", self._on_status, 10)]
        self._timers = [self.create_timer(1.0 / control_rate_hz, lambda: self._step("timer")),
                        self.create_timer(diagnostics_period_s, self._publish_diagnostics)]
        for t in self._timers:
            t.cancel()  # ticking starts on activate
        self._pubs, self._subs = [self.pub_subnet, self.pub_freq, self.pub_diag], subs

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
    def _on_target(self, msg: PerformanceTarget) -> None:
        try:
            t = parse_target(msg.max_latency_ms, msg.min_accuracy, msg.max_energy_mj, msg.priority)
        except InvalidTarget as exc:
            self._warn_once(f"invalid:{msg.workload}", f"ignoring performance target for {msg.workload!r}: {exc}")
            return
        try:
            self.policy.set_target(msg.workload, t)
        except UnknownWorkload as exc:
            self._warn_once(f"target:{msg.workload}", f"ignoring performance target: {exc}")
            return
        self.get_logger().info(f"retarget {msg.workload}: {t}")
        self._step(f"target {msg.workload}")

    def _on_battery(self, msg: BatteryState) -> None:
        pct = msg.percentage * 100.0 if math.isfinite(msg.percentage) else math.nan
        self.platform.battery_percent = pct
        self.platform.charging = msg.power_supply_status in (BatteryState.POWER_SUPPLY_STATUS_CHARGING,
                                                             BatteryState.POWER_SUPPLY_STATUS_FULL)
        self._push_platform("battery")

    def _on_temperature(self, msg: Temperature) -> None:
        self._temps[msg.header.frame_id or "unknown"] = float(msg.temperature)
        self.platform.temperatures_c = dict(self._temps)
        self._push_platform("temperature")

    def _on_load(self, msg: PlatformLoad) -> None:
        self.platform.cpu_percent = tuple(float(c) for c in msg.cpu_percent)
        self.platform.gpu_percent = float(msg.gpu_percent)
        self.platform.memory_used_mb = msg.memory_used_bytes / 2**20
        self.platform.memory_total_mb = msg.memory_total_bytes / 2**20
        self._push_platform("load")

    def _push_platform(self, why: str) -> None:
        self.policy.update_platform(PlatformState(**vars(self.platform)))
        self._step(why)

    def _on_status(self, msg: WorkloadStatus) -> None:
        fb = WorkloadFeedback(msg.active_subnet_id, float(msg.latency_p50_ms), float(msg.latency_p95_ms),
                              float(msg.input_rate_hz), float(msg.output_rate_hz))
        try:
            self.policy.update_feedback(msg.workload, fb, time.monotonic())
        except UnknownWorkload as exc:
            self._warn_once(f"status:{msg.workload}", f"ignoring workload status: {exc}")
            return
        self._step("status")

    def _on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate first (NaN / negative rejected with the reason), then apply all or nothing."""
        pending: dict[str, dict[str, float]] = {}
        other: dict[str, object] = {}
        for prm in params:
            if "." in prm.name and prm.name.rsplit(".", 1)[1] in _TARGET_FIELDS:
                w, f = prm.name.rsplit(".", 1)
                if w not in self.workload_names:
                    return SetParametersResult(successful=False, reason=f"unknown workload {w!r}")
                if not isinstance(prm.value, (int, float)) or isinstance(prm.value, bool):
                    return SetParametersResult(successful=False, reason=f"{prm.name} must be a number")
                pending.setdefault(w, {})[f] = prm.value
            elif prm.name in ("memory_budget_mb", "min_dwell_s", "up_margin", "time_budget_ms"):
                v = prm.value
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                    return SetParametersResult(successful=False, reason=f"{prm.name} must be a finite number >= 0")
                other[prm.name] = float(v)
            elif prm.name == "dry_run":
                other[prm.name] = bool(prm.value)
        targets = {}
        for w, fields in pending.items():
            cur = {f: (getattr(self.policy.target(w), f) if self.policy else self.get_parameter(f"{w}.{f}").value)
                   for f in _TARGET_FIELDS}
            vals = {f: fields.get(f, cur[f]) for f in _TARGET_FIELDS}
            problem = target_problem(*(float(vals[f]) for f in _TARGET_FIELDS))
            if problem:
                return SetParametersResult(successful=False, reason=f"{w}: {problem}")
            targets[w] = Target(float(vals["max_latency_ms"]), float(vals["min_accuracy"]),
                                float(vals["max_energy_mj"]), int(vals["priority"]))
        if self.policy is None:
            return SetParametersResult(successful=True)  # validated; configure reads the stored values
        for w, t in targets.items():
            self.policy.set_target(w, t)
            self.get_logger().info(f"retarget {w} (parameter): {t}")
        cfg = self.policy.config
        for name, v in other.items():
            if name == "dry_run":
                self.dry_run = v
                cfg.frequency_applied = not v
            else:
                setattr(cfg, name, v)
        if targets or other:
            self._step("parameters")
        return SetParametersResult(successful=True)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    # ------------------------------------------------------------------------------------------ decide
    def _step(self, why: str) -> None:
        if not self._deciding:
            return  # configured but inactive: inputs are kept, nothing is decided or published
        d = self.policy.decide(time.monotonic())
        self._decision = d
        now = time.monotonic()
        refresh = now - self._last_refresh >= self.refresh_period
        if refresh:
            self._last_refresh = now
        stamp = self.get_clock().now().to_msg()
        for name, c in d.subnets.items():
            if refresh or self._last_subnet.get(name) != c.subnet_id:
                if self._last_subnet.get(name) != c.subnet_id:
                    self.get_logger().info(f"[{why}] {name} -> {c.subnet_id} ({c.reason}"
                                           f"{'; ' + c.status if c.status else ''})")
                self._last_subnet[name] = c.subnet_id
                m = SubnetDecision()
                m.header.stamp = stamp
                m.workload = name
                m.subnet_id = c.subnet_id
                m.architecture = c.point.architecture
                m.graph_variant = c.point.graph_variant
                m.expected_latency_ms = float(c.expected_latency_ms)
                m.expected_accuracy = float(c.point.accuracy)
                m.expected_memory_mb = float(c.point.memory_mb)
                m.reason = c.reason + (f"; not met: {c.status}" if c.status else "")
                self.pub_subnet.publish(m)
        key = tuple((f.domain, f.frequency_hz) for f in d.frequencies) + (self.dry_run,)
        if refresh or key != self._last_freq:
            self._last_freq = key
            m = FrequencyDecision()
            m.header.stamp = stamp
            m.domains = [DomainFrequency(domain=f.domain, frequency_hz=int(f.frequency_hz), governor=f.governor)
                         for f in d.frequencies]
            m.reason = "; ".join(sorted({f.reason for f in d.frequencies}))
            m.dry_run = self.dry_run
            self.pub_freq.publish(m)

    def _publish_diagnostics(self) -> None:
        d = self._decision
        if d is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        kv = lambda k, v: KeyValue(key=k, value=str(v))  # noqa: E731
        top = DiagnosticStatus(name="dynofa_ros: resource_manager", hardware_id="dynofa_ros")
        top.level = DiagnosticStatus.WARN if d.truncated else DiagnosticStatus.OK
        top.message = f"{d.mode} mode" + (", search truncated at time budget" if d.truncated else "")
        top.values = [kv("mode", d.mode), kv("search_ms", f"{d.search_ms:.3f}"), kv("dry_run", self.dry_run),
                      kv("cpu_background_load", f"{self.policy.background_load('cpu'):.2f}"),
                      kv("gpu_background_load", f"{self.policy.background_load('gpu'):.2f}"),
                      kv("power_model", "modelled")]
        top.values += [kv(f"cap_{k}", f"{v:.2f}") for k, v in d.caps.items()]
        top.values += [kv(f"freq_{f.domain}_hz", f.frequency_hz) for f in d.frequencies]
        arr.status.append(top)
        for name, c in d.subnets.items():
            s = DiagnosticStatus(name=f"dynofa_ros: workload {name}", hardware_id="dynofa_ros")
            s.level = DiagnosticStatus.OK if c.target_met else DiagnosticStatus.WARN
            s.message = "target met (predicted)" if c.target_met else f"target not met: {c.status}"
            t = self.policy.target(name)
            s.values = [kv("subnet_id", c.subnet_id), kv("graph_variant", c.point.graph_variant),
                        kv("reason", c.reason), kv("expected_latency_ms", f"{c.expected_latency_ms:.2f}"),
                        kv("expected_energy_mj_modelled", f"{c.expected_energy_mj:.2f}"),
                        kv("feedback_ratio", f"{self.policy.feedback_ratio(name):.2f}"),
                        kv("materialised", ",".join(d.materialised.get(name, []))),
                        *(kv(f"target_{f}", getattr(t, f)) for f in _TARGET_FIELDS)]
            arr.status.append(s)
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> None:
    run_node(ResourceManagerNode, "resource_manager", args)


if __name__ == "__main__":
    main()
