"""Simulated platform for tests, the demo and the benchmarks. Everything it reports is MODELLED.

Power: per DVFS domain `static + dynamic * (f / fmax) ** exponent * utilisation` plus the board's idle
power (numbers and their sources in config/devices/*.yaml). Battery: energy drained by that power.
Temperature: one thermal RC node for the SoC (C dT/dt = P - (T - T_ambient) / R) with per-zone offsets
proportional to the power of the processor the zone sits on; at `throttle_c` the "hardware" throttles
every domain to half its maximum until it has cooled by 5 C (what the policy tries to pre-empt).
Background load can be injected per processor kind to model co-running work.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from dynofa_ros.platform.monitors import BatteryReading
from dynofa_ros.platform.profiles import DeviceProfile

THROTTLE_FRACTION = 0.5
THROTTLE_RELEASE_C = 5.0


@dataclass(frozen=True)
class SimSnapshot:
    cpu_percent: list[float]
    gpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    temperatures_c: dict[str, float]
    battery: BatteryReading
    power_w: float
    frequencies_hz: dict[str, int]     # effective (after hardware throttling)
    throttled: bool
    modelled: bool = True


class SimulatedPlatform:
    def __init__(self, profile: DeviceProfile, battery_percent: float = 100.0, ambient_c: float | None = None,
                 seed: int = 0, memory_total_mb: float = 8192.0, noise: float = 0.02) -> None:
        self.profile = profile
        self.rng = random.Random(seed)
        self.noise = noise
        self.capacity_j = profile.battery.capacity_wh * 3600.0
        self.energy_j = self.capacity_j * min(100.0, max(0.0, battery_percent)) / 100.0
        self.ambient_c = profile.thermal.ambient_c if ambient_c is None else ambient_c
        self.temp_c = self.ambient_c
        self.requested_hz = {d.name: d.max_hz for d in profile.domains}
        self.background = {"cpu": 0.0, "gpu": 0.0}
        self.workload_util = {"cpu": 0.0, "gpu": 0.0}
        self.memory_total_mb = memory_total_mb
        self.memory_used_mb = 0.25 * memory_total_mb
        self.throttled = False
        self.charging = False
        self.consumed_j = 0.0
        self.time_s = 0.0
        self._power = self.power_w()

    # ---- inputs
    def set_frequencies(self, pairs: dict[str, int]) -> None:
        for name, hz in pairs.items():
            if name in self.requested_hz:
                d = self.profile.domain(name)
                self.requested_hz[name] = min(d.levels_hz, key=lambda f: (f < hz, abs(f - hz)))

    def inject_load(self, kind: str, fraction: float) -> None:
        self.background[kind] = min(1.0, max(0.0, fraction))

    def set_workload_util(self, kind: str, util: float) -> None:
        self.workload_util[kind] = min(1.0, max(0.0, util))

    # ---- model
    def effective_hz(self, name: str) -> int:
        d = self.profile.domain(name)
        hz = self.requested_hz[name]
        if self.throttled:
            cap = d.max_hz * THROTTLE_FRACTION
            hz = max([f for f in d.levels_hz if f <= cap] or [d.levels_hz[0]]) if hz > cap else hz
        return hz

    def _util(self, kind: str) -> float:
        return min(1.0, self.background.get(kind, 0.0) + self.workload_util.get(kind, 0.0))

    def domain_power_w(self, kind: str) -> float:
        return sum(d.power_w(self.effective_hz(d.name), self._util(kind)) for d in self.profile.domains
                   if d.kind == kind)

    def power_w(self) -> float:
        return self.profile.board_idle_w + sum(self.domain_power_w(k) for k in ("cpu", "gpu"))

    def step(self, dt: float) -> float:
        """Advance `dt` seconds; returns the modelled power over the step (W)."""
        p = self.power_w()
        th = self.profile.thermal
        tau = th.resistance_c_per_w * th.capacity_j_per_c
        t_inf = self.ambient_c + p * th.resistance_c_per_w
        self.temp_c = t_inf + (self.temp_c - t_inf) * math.exp(-dt / tau)
        if self.temp_c >= th.throttle_c:
            self.throttled = True
        elif self.throttled and self.temp_c < th.throttle_c - THROTTLE_RELEASE_C:
            self.throttled = False
        e = p * dt
        self.consumed_j += e
        if not self.charging:
            self.energy_j = max(0.0, self.energy_j - e)
        self.time_s += dt
        self._power = p
        return p

    @property
    def battery_percent(self) -> float:
        return 100.0 * self.energy_j / self.capacity_j

    def snapshot(self) -> SimSnapshot:
        n = sum(d.cores for d in self.profile.domains if d.kind == "cpu") or 1
        cpu = []
        for _ in range(n):
            v = self._util("cpu") * 100.0 + self.rng.gauss(0.0, self.noise * 100.0)
            cpu.append(min(100.0, max(0.0, v)))
        has_gpu = any(d.kind == "gpu" for d in self.profile.domains)
        gpu = min(100.0, max(0.0, self._util("gpu") * 100.0 + self.rng.gauss(0.0, self.noise * 100.0))) \
            if has_gpu else math.nan
        temps = {}
        for z in self.profile.thermal.zones:
            kind = "gpu" if "gpu" in z.lower() else "cpu" if "cpu" in z.lower() else None
            extra = 0.5 * self.domain_power_w(kind) if kind else 0.0   # hot spot above the SoC average
            temps[z] = self.temp_c + extra + self.rng.gauss(0.0, 0.2)
        v_nom = self.profile.battery.voltage_v
        soc = self.battery_percent / 100.0
        volt = v_nom * (0.9 + 0.2 * soc)       # crude open-circuit curve: 90..110 % of nominal
        batt = BatteryReading("simulated", self.battery_percent, volt,
                              -self._power / volt if not self.charging else self._power / volt,
                              "Charging" if self.charging else "Discharging")
        return SimSnapshot(cpu, gpu, int(self.memory_used_mb * 2**20), int(self.memory_total_mb * 2**20), temps,
                           batt, self._power, {d.name: self.effective_hz(d.name) for d in self.profile.domains},
                           self.throttled)
