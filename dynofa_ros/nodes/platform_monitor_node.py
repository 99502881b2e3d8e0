"""Platform monitor node: battery, one Temperature per thermal zone, PlatformLoad and /diagnostics, from the
real system (sysfs discovered at run time) or from the simulated platform (`simulated:=true`, modelled).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import BatteryState, Temperature

from dynofa_ros.bounds import Bound
from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.msg import FrequencyDecision, PlatformLoad, WorkloadStatus
from dynofa_ros.platform.monitors import BatteryReading, SysfsPlatformMonitor
from dynofa_ros.platform.profiles import load_profile
from dynofa_ros.platform.simulated import SimulatedPlatform

_STATUS = {"Charging": BatteryState.POWER_SUPPLY_STATUS_CHARGING,
           "Discharging": BatteryState.POWER_SUPPLY_STATUS_DISCHARGING,
           "Full": BatteryState.POWER_SUPPLY_STATUS_FULL,
           "Not charging": BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING}
MAX_RATE_HZ = 100.0       # beyond this the timer is a busy loop that only burns the CPU it measures
MAX_TIME_SCALE = 10000.0
AMBIENT_RANGE_C = (-60.0, 150.0)
LOAD_BOUND = Bound(0.0, 1.0)  # background_cpu_load / background_gpu_load, a share of the processor
UTIL_FRESH_S = 5.0        # a workload's status older than this no longer counts as load
MAX_WORKLOADS = 64        # workload names come from messages: bounded, stale ones pruned first


class PlatformMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__("platform_monitor")
        p = self.declare_parameter
        p("simulated", False, describe("publish the simulated platform (modelled) instead of the real system", True))
        p("device_profile", "generic_x86", describe("device profile for the simulation (config/devices name or path)", True))
        p("sysfs_root", "/", describe("root of sysfs/procfs to read (tests point it at a fake tree)", True))
        p("rate_hz", 2.0, describe("publishing rate, Hz, within (0, 100]", True))
        p("battery_percent", 100.0, describe("simulation: initial battery charge, %, 0..100", True))
        p("ambient_c", math.nan, describe("simulation: ambient temperature C, -60..150 (NaN: the profile's)"))
        p("background_cpu_load", 0.0, describe("simulation: injected co-running CPU load, fraction 0..1"))
        p("background_gpu_load", 0.0, describe("simulation: injected co-running GPU load, fraction 0..1"))
        p("time_scale", 1.0, describe("simulation: simulated seconds per wall second (faster battery/thermal), within (0, 10000]", True))
        p("charging", False, describe("simulation: on the charger (battery does not drain)"))
        gp = lambda n: self.get_parameter(n).value  # noqa: E731
        self._validate(gp)
        self.simulated = bool(gp("simulated"))
        self.time_scale = float(gp("time_scale"))
        self._util: dict[str, tuple[float, float]] = {}
        profile = load_profile(gp("device_profile"))   # checked even when unused: a typo is an error
        if self.simulated:
            amb = float(gp("ambient_c"))
            self.sim = SimulatedPlatform(profile, float(gp("battery_percent")), None if math.isnan(amb) else amb)
            self.sim.inject_load("cpu", float(gp("background_cpu_load")))
            self.sim.inject_load("gpu", float(gp("background_gpu_load")))
            self.sim.charging = bool(gp("charging"))
            self.create_subscription(FrequencyDecision, "frequency_decision", self._on_freq, 10)
            self.create_subscription(WorkloadStatus, "workload_status", self._on_status, 10)
            self.get_logger().info(f"simulated platform {profile.name} (all values MODELLED)")
            self.monitor = None
        else:
            self.monitor = SysfsPlatformMonitor(gp("sysfs_root"))
            self.get_logger().info(f"real platform: {len(self.monitor.clusters)} cpufreq cluster(s), GPU "
                                   f"{self.monitor.gpu.name if self.monitor.gpu else 'none'}; "
                                   + "; ".join(self.monitor.notes))
        self.add_on_set_parameters_callback(self._on_parameters)
        self.pub_batt = self.create_publisher(BatteryState, "battery_state", 10)
        self.pub_temp = self.create_publisher(Temperature, "temperature", 50)
        self.pub_load = self.create_publisher(PlatformLoad, "platform_load", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last = time.monotonic()
        self.create_timer(1.0 / float(gp("rate_hz")), self._tick)

    @staticmethod
    def _validate(gp) -> None:
        """Every start-up parameter, so a bad one is one fatal line instead of a busy loop or a traceback."""
        Bound(0.0, MAX_RATE_HZ, lo_open=True).check("rate_hz", gp("rate_hz"))
        Bound(0.0, MAX_TIME_SCALE, lo_open=True).check("time_scale", gp("time_scale"))
        Bound(0.0, 100.0).check("battery_percent", gp("battery_percent"))
        for name in ("background_cpu_load", "background_gpu_load"):
            LOAD_BOUND.check(name, gp(name))
        reason = PlatformMonitorNode._ambient_error(gp("ambient_c"))
        if reason:
            raise ValueError(reason)
        if not gp("simulated") and not Path(gp("sysfs_root")).is_dir():
            raise ValueError(f"sysfs_root {str(gp('sysfs_root'))[:200]!r} is not a directory")

    @staticmethod
    def _ambient_error(value: float) -> str:
        lo, hi = AMBIENT_RANGE_C
        if math.isnan(value) or lo <= value <= hi:
            return ""
        return f"ambient_c must be NaN (the profile's) or within [{lo:g}, {hi:g}] C, got {value:g}"

    def _on_parameters(self, params) -> SetParametersResult:
        for prm in params:
            if prm.name in ("background_cpu_load", "background_gpu_load"):
                if not LOAD_BOUND.holds(prm.value):
                    return SetParametersResult(successful=False,
                                               reason=f"{prm.name} must be {LOAD_BOUND.describe()}")
            if prm.name == "ambient_c" and (reason := self._ambient_error(float(prm.value))):
                return SetParametersResult(successful=False, reason=reason)
        if self.simulated:
            for prm in params:
                if prm.name == "background_cpu_load":
                    self.sim.inject_load("cpu", float(prm.value))
                elif prm.name == "background_gpu_load":
                    self.sim.inject_load("gpu", float(prm.value))
                elif prm.name == "charging":
                    self.sim.charging = bool(prm.value)
                elif prm.name == "ambient_c" and not math.isnan(prm.value):
                    self.sim.ambient_c = float(prm.value)
        return SetParametersResult(successful=True)

    def _on_freq(self, msg: FrequencyDecision) -> None:
        """The simulated hardware follows decisions an actuator would really apply (not dry runs)."""
        if not msg.dry_run:
            self.sim.set_frequencies({d.domain: int(d.frequency_hz) for d in msg.domains})

    def _on_status(self, msg: WorkloadStatus) -> None:
        if not (math.isfinite(msg.output_rate_hz) and math.isfinite(msg.latency_p50_ms)):
            return
        now, name = time.monotonic(), msg.workload[:64]
        if name not in self._util and len(self._util) >= MAX_WORKLOADS:
            self._util = {k: v for k, v in self._util.items() if now - v[1] < UTIL_FRESH_S}
            if len(self._util) >= MAX_WORKLOADS:
                self.get_logger().warning(f"more than {MAX_WORKLOADS} workloads report status; ignoring new "
                                          "names until some go quiet", throttle_duration_sec=10.0)
                return
        self._util[name] = (max(0.0, msg.output_rate_hz * msg.latency_p50_ms / 1000.0), now)

    def _tick(self) -> None:
        now = time.monotonic()
        stamp = self.get_clock().now().to_msg()
        if self.simulated:
            cores = sum(d.cores for d in self.sim.profile.domains if d.kind == "cpu") or 1
            busy = sum(u for u, t in self._util.values() if now - t < UTIL_FRESH_S)
            self.sim.set_workload_util("cpu", busy / cores)
            self.sim.step((now - self._last) * self.time_scale)
            snap = self.sim.snapshot()
            cpu, gpu, used, total = snap.cpu_percent, snap.gpu_percent, snap.memory_used_bytes, snap.memory_total_bytes
            temps, batt = snap.temperatures_c, snap.battery
            extra = [("power_w_modelled", f"{snap.power_w:.2f}"), ("throttled", snap.throttled),
                     *((f"freq_{k}_hz", v) for k, v in snap.frequencies_hz.items())]
            notes = ["MODELLED by the simulated platform"]
        else:
            snap = self.monitor.read()
            cpu, gpu, used, total = snap.cpu_percent, snap.gpu_percent, snap.memory_used_bytes, snap.memory_total_bytes
            temps, batt = snap.temperatures_c, snap.battery
            extra = [(f"rail_{r.rail}_mw", f"{r.power_mw:.0f}") for r in snap.rails]
            extra += [(f"freq_{f.cluster}_khz", f.cur_khz) for f in snap.cpu_freq]
            if snap.gpu is not None:
                extra.append(("freq_gpu_hz", snap.gpu.cur_hz))
            notes = snap.notes
        self._last = now
        load = PlatformLoad()
        load.header.stamp = stamp
        load.cpu_percent = [float(c) for c in cpu]
        load.gpu_percent = float(gpu)
        load.memory_used_bytes = int(used)
        load.memory_total_bytes = int(total)
        load.modelled = self.simulated
        self.pub_load.publish(load)
        for zone, t in temps.items():
            m = Temperature()
            m.header.stamp = stamp
            m.header.frame_id = zone
            m.temperature = float(t)
            m.variance = 0.0
            self.pub_temp.publish(m)
        if batt is not None:
            self.pub_batt.publish(self._battery_msg(batt, stamp))
        self._diagnostics(stamp, cpu, temps, batt, extra, notes)

    def _battery_msg(self, b: BatteryReading, stamp) -> BatteryState:
        m = BatteryState()
        m.header.stamp = stamp
        m.header.frame_id = b.name
        m.voltage = float(b.voltage_v)
        m.current = float(b.current_a)
        m.charge = m.capacity = m.design_capacity = math.nan
        m.percentage = float(b.percent / 100.0) if math.isfinite(b.percent) else math.nan
        m.power_supply_status = _STATUS.get(b.status, BatteryState.POWER_SUPPLY_STATUS_UNKNOWN)
        m.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN
        m.present = True
        return m

    def _diagnostics(self, stamp, cpu, temps, batt, extra, notes) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = stamp
        s = DiagnosticStatus(name="dynofa_ros: platform_monitor", hardware_id="simulated" if self.simulated else "sysfs")
        s.level = DiagnosticStatus.OK
        s.message = ("simulated (modelled)" if self.simulated else "real system") + \
            (f"; {len(notes)} note(s)" if notes and not self.simulated else "")
        kv = lambda k, v: KeyValue(key=str(k), value=str(v))  # noqa: E731
        s.values = [kv("modelled", self.simulated), kv("cpu_percent_mean", f"{sum(cpu) / max(1, len(cpu)):.1f}")]
        s.values += [kv(f"temp_{z}_c", f"{t:.1f}") for z, t in temps.items()]
        if batt is not None:
            s.values.append(kv("battery_percent", f"{batt.percent:.1f}"))
        s.values += [kv(k, v) for k, v in extra]
        s.values += [kv(f"note_{i}", n) for i, n in enumerate(notes)]
        arr.status.append(s)
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> None:
    run_node(PlatformMonitorNode, "platform_monitor", args)


if __name__ == "__main__":
    main()
