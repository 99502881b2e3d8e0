"""Platform-side controllers: battery mode, thermal frequency caps, background-load estimate.

Each keeps only what it needs (a mode, a cap per processor kind, a load share per kind), so their cost
per decision does not grow with the number of zones or messages seen.
"""
from __future__ import annotations

import math
from itertools import islice

from dynofa_ros.manager.types import PolicyConfig

KINDS = ("cpu", "gpu")


def zone_kind(zone_type: str) -> str | None:
    """Which processor a thermal zone limits: 'cpu', 'gpu', None (SoC junction: both), or 'other'
    (PMIC, board, fan estimate: ignored; Xavier's PMIC-Die reads a constant 100 C)."""
    z = zone_type.lower()
    if "gpu" in z:
        return "gpu"
    if "cpu" in z:
        return "cpu"
    if any(k in z for k in ("soc", "tj", "x86_pkg", "tdiode")):
        return None
    return "other"


def hottest_per_kind(temperatures_c: dict[str, float], max_zones: int) -> tuple[dict[str, float], int]:
    """The hottest finite reading limiting each processor kind, from at most `max_zones` zones (in the
    order given), and how many zones were left out."""
    hottest: dict[str, float] = {}
    for zone, t in islice(temperatures_c.items(), max_zones):
        kind = zone_kind(zone)
        if kind == "other" or not math.isfinite(t):
            continue
        for k in KINDS if kind is None else (kind,):
            if t > hottest.get(k, -math.inf):
                hottest[k] = t
    return hottest, max(0, len(temperatures_c) - max_zones)


class BatteryMode:
    """normal / saving / critical from the battery level, with hysteresis; unknown or charging: normal."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.mode = "normal"

    def update(self, percent: float, charging: bool) -> str:
        c, b = self.config, percent
        h = c.battery_hysteresis_percent
        if not math.isfinite(b) or charging:
            self.mode = "normal"
        elif b < c.critical_below_percent or (self.mode == "critical" and b < c.critical_below_percent + h):
            self.mode = "critical"
        elif b < c.saving_below_percent or (self.mode in ("saving", "critical") and b < c.saving_below_percent + h):
            self.mode = "saving"
        else:
            self.mode = "normal"
        return self.mode


class ThermalCap:
    """Scale down before the hardware throttles: an integral controller holds the hottest zone of each
    processor at `throttle_c - thermal_margin_c` with the highest sustainable frequency cap (a fixed map
    from temperature to cap gives away performance the cooling could sustain); within 1 C of the throttle
    point a proportional bound cuts in at once. No reading for a kind: no cap."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.caps: dict[str, float] = {k: 1.0 for k in KINDS}
        self._t: float | None = None

    def update(self, hottest: dict[str, float], now: float) -> dict[str, float]:
        dt = min(2.0, max(0.0, now - self._t)) if self._t is not None else 0.0
        self._t = now
        for kind in KINDS:
            t = hottest.get(kind)
            self.caps[kind] = 1.0 if t is None else self._step(self.caps[kind], t, dt)
        return self.caps

    def _step(self, cap: float, hottest: float, dt: float) -> float:
        c = self.config
        setpoint = c.throttle_c - c.thermal_margin_c
        if hottest > setpoint:
            cap -= c.thermal_gain * (hottest - setpoint) * dt
        elif hottest < setpoint - c.thermal_hysteresis_c:
            cap += c.thermal_gain * (setpoint - c.thermal_hysteresis_c - hottest) * dt
        edge = c.throttle_c - 1.0
        if hottest > edge:
            cap = min(cap, 1.0 - min(1.0, hottest - edge) * (1.0 - c.thermal_min_cap))
        return min(1.0, max(c.thermal_min_cap, cap))

    @property
    def limited(self) -> bool:
        return any(v < 1.0 - 1e-6 for v in self.caps.values())


class BackgroundLoad:
    """Busy share per processor kind not explained by our own workloads: smoothed, but a rise of more
    than `load_spike` is taken at once (a spike must act now, a dip may be noise)."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.share: dict[str, float] = {k: 0.0 for k in KINDS}

    def update(self, samples: dict[str, float]) -> None:
        a = self.config.load_alpha
        for kind, s in samples.items():
            s = min(1.0, max(0.0, s))
            prev = self.share[kind]
            self.share[kind] = s if s - prev > self.config.load_spike else prev + a * (s - prev)

    def forget(self) -> None:
        """The load reading expired: assume none and let measured latency (feedback) carry the rest."""
        self.share = {k: 0.0 for k in KINDS}


def load_samples(cpu_percent: tuple[float, ...], gpu_percent: float, own: dict[str, float]) -> dict[str, float]:
    """Background busy share per kind: what the platform reports minus what `own` workloads explain."""
    samples = {}
    if cpu_percent:
        busy = sum(min(100.0, max(0.0, c)) for c in cpu_percent) / 100.0
        samples["cpu"] = max(0.0, busy - own.get("cpu", 0.0)) / len(cpu_percent)
    if math.isfinite(gpu_percent):
        samples["gpu"] = max(0.0, gpu_percent / 100.0 - own.get("gpu", 0.0))
    return samples
