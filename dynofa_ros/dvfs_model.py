"""The manager's own DVFS model: frequency domains, latency scaling with clock, modelled power.

It sits below both `dynofa_ros.platform` (device profiles build `FrequencyDomain`s from YAML) and
`dynofa_ros.manager` (the policy plans with it). It is a planning model, not the truth: latency at
frequency f is `table latency * (b * fmax / f + 1 - b)` with `b` the compute-bound share, and power is
`static + dynamic * (f / fmax) ** exponent * utilisation`.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FrequencyDomain:
    """One DVFS domain (a CPU cluster or the GPU) with its modelled power (sources: config/devices/*.yaml)."""
    name: str                       # "cpu0", "cpu4", "gpu"
    kind: str                       # "cpu" | "gpu"
    levels_hz: tuple[int, ...]      # ascending
    compute_bound: float = 0.85     # share of latency that scales with 1/f (rest: memory/IO bound)
    static_w: float = 0.3           # leakage + uncore while on
    dynamic_w: float = 2.0          # dynamic power at max frequency, fully busy
    exponent: float = 2.4           # P_dyn ~ f * V^2 with V rising with f
    cores: int = 1
    fixed: bool = False             # no DVFS here (profile lacks the processor): never in a decision
    # (f / fmax) ** exponent per level, computed once: the frequency search evaluates it per level
    _rel_dyn: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels_hz or list(self.levels_hz) != sorted(self.levels_hz):
            raise ValueError(f"domain {self.name!r}: levels_hz must be non-empty and ascending")
        top = self.levels_hz[-1]
        object.__setattr__(self, "_rel_dyn", tuple((f / top) ** self.exponent for f in self.levels_hz))

    @property
    def max_hz(self) -> int:
        return self.levels_hz[-1]

    def index_at_or_above(self, frac: float) -> int:
        """Index of the lowest level >= frac * max (clamped to the available levels)."""
        want = frac * self.max_hz
        i = bisect.bisect_left(self.levels_hz, want - 1e-6 * self.max_hz)
        return min(i, len(self.levels_hz) - 1)

    def level_at_or_above(self, frac: float) -> int:
        """Lowest level >= frac * max (clamped to the available levels)."""
        return self.levels_hz[self.index_at_or_above(frac)]

    def cap_fraction(self, cap: float) -> float:
        """The highest level at or below `cap` (a fraction of max), as a fraction; the lowest level if none."""
        i = bisect.bisect_right(self.levels_hz, cap * self.max_hz * (1 + 1e-9)) - 1
        return self.levels_hz[max(0, i)] / self.max_hz

    def power_w(self, freq_hz: float, util: float) -> float:
        return self.static_w + self.dynamic_w * (freq_hz / self.max_hz) ** self.exponent * min(1.0, max(0.0, util))

    def power_at(self, frac: float, util: float) -> float:
        """`power_w` at the level a request for `frac` of max lands on, from the precomputed table."""
        return self.static_w + self.dynamic_w * self._rel_dyn[self.index_at_or_above(frac)] * min(1.0, max(0.0, util))


def latency_scale(compute_bound: float, frac: float) -> float:
    """Latency multiplier at `frac` of the frequency the table was measured at (its maximum)."""
    return compute_bound / frac + (1.0 - compute_bound)


def processor_kind(device_key: str) -> str:
    """'gpu' for a CUDA/GPU table device key (e.g. 'cuda', 'cuda@fp16'), else 'cpu'."""
    proc = device_key.split("@", 1)[0]
    return "gpu" if proc in ("cuda", "gpu") else "cpu"


def device_threads(device_key: str) -> int:
    """Threads a table device key was measured with ('cpu@2t' -> 2; offline/profiler.device_key writes
    them); 1 where it names none (a GPU key, plain 'cpu')."""
    for part in device_key.split("@")[1:]:
        if len(part) > 1 and part.endswith("t") and part[:-1].isdigit():
            return max(1, int(part[:-1]))
    return 1


@dataclass(frozen=True)
class PowerTable:
    """Modelled power of all domains of one processor kind at each level of the first (representative)
    domain, precomputed: a decision evaluates it for every level, many times."""
    fracs: tuple[float, ...]        # the representative's levels as fractions of its maximum, ascending
    busy_w: tuple[float, ...]       # the representative fully busy (energy per inference = this x latency)
    static_w: float                 # summed over the kind's domains
    dynamic_w: tuple[float, ...]    # summed dynamic power at full utilisation

    @classmethod
    def build(cls, domains: tuple[FrequencyDomain, ...]) -> "PowerTable":
        rep = domains[0]
        fracs = tuple(f / rep.max_hz for f in rep.levels_hz)
        dyn = tuple(sum(d.dynamic_w * d._rel_dyn[d.index_at_or_above(x)] for d in domains) for x in fracs)
        return cls(fracs, tuple(rep.power_at(x, 1.0) for x in fracs), sum(d.static_w for d in domains), dyn)

    def index(self, frac: float) -> int:
        """The level index of `frac` (the lowest level at or above it)."""
        i = bisect.bisect_left(self.fracs, frac - 1e-9)
        return min(i, len(self.fracs) - 1)

    def power_w(self, k: int, util: float) -> float:
        return self.static_w + self.dynamic_w[k] * min(1.0, max(0.0, util))
