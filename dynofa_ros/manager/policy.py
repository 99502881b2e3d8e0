"""Cross-layer runtime policy: per workload a sub-network x graph variant, then the DVFS levels.

Hierarchical, as in the Dynamic-OFA runtime papers: workloads are placed in priority order at the highest
frequency the platform currently allows (thermal and battery caps), each taking the best operating point
that meets its targets given the contention of the workloads already placed (and never breaking theirs);
then each processor gets the lowest-energy frequency at which every target met at the cap is still met.
Measured latency corrects the model (feedback ratio), load spikes and retargets act at once, and
hysteresis (headroom to move up, a dwell time, minimum gains) keeps noise from making it oscillate.

Everything here is a model: latency at frequency f is `table latency * (b * fmax / f + 1 - b)` with `b`
the compute-bound share of the processor; co-running load multiplies it by `1 + gain * busy share`;
power is `static + dynamic * (f / fmax) ** exponent * utilisation`. ROS-free and unit-testable.
"""
from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field
from typing import Iterable

from dynofa_ros.operating_points import OperatingPoint, OperatingPointTable

MODES = ("normal", "saving", "critical")


class UnknownWorkload(KeyError):
    """A target or status for a workload the manager was not configured with."""


def _none_if_unset(v: float | None) -> float:
    """Message semantics: None, NaN, 0 (and negative) mean 'no constraint'; parameters are stricter."""
    return 0.0 if v is None or not math.isfinite(v) or v <= 0 else float(v)


@dataclass(frozen=True)
class Target:
    """Per-workload performance target; 0 (or NaN, normalised to 0) means no constraint."""
    max_latency_ms: float = 0.0
    min_accuracy: float = 0.0
    max_energy_mj: float = 0.0
    priority: int = 0

    @staticmethod
    def from_fields(max_latency_ms: float, min_accuracy: float, max_energy_mj: float, priority: int) -> "Target":
        """Message semantics: NaN or 0 -> no constraint."""
        return Target(_none_if_unset(max_latency_ms), _none_if_unset(min_accuracy), _none_if_unset(max_energy_mj),
                      int(priority))

    @staticmethod
    def problem(max_latency_ms: float, min_accuracy: float, max_energy_mj: float, priority: int) -> str | None:
        """Parameter semantics (stricter): NaN or negative values are rejected; returns why, or None."""
        for name, v in (("max_latency_ms", max_latency_ms), ("min_accuracy", min_accuracy),
                        ("max_energy_mj", max_energy_mj), ("priority", priority)):
            if v is None or not math.isfinite(float(v)):
                return f"{name} must be a finite number (0 = no constraint), got {v!r}"
            if v < 0:
                return f"{name} must be >= 0 (0 = no constraint), got {v!r}"
        if min_accuracy > 1:
            return f"min_accuracy is a fraction 0..1, got {min_accuracy!r}"
        return None


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

    @property
    def max_hz(self) -> int:
        return self.levels_hz[-1]

    def level_at_or_above(self, frac: float) -> int:
        """Lowest level >= frac * max (clamped to the available levels)."""
        want = frac * self.max_hz
        i = bisect.bisect_left(self.levels_hz, want - 1e-6 * self.max_hz)
        return self.levels_hz[min(i, len(self.levels_hz) - 1)]

    def power_w(self, freq_hz: float, util: float) -> float:
        return self.static_w + self.dynamic_w * (freq_hz / self.max_hz) ** self.exponent * min(1.0, max(0.0, util))


def latency_scale(compute_bound: float, frac: float) -> float:
    """Latency multiplier at `frac` of the frequency the table was measured at (its maximum)."""
    return compute_bound / frac + (1.0 - compute_bound)


@dataclass
class PlatformState:
    """Latest hardware state; NaN / empty where unknown."""
    battery_percent: float = math.nan
    charging: bool = False
    temperatures_c: dict[str, float] = field(default_factory=dict)
    cpu_percent: tuple[float, ...] = ()
    gpu_percent: float = math.nan
    memory_used_mb: float = math.nan
    memory_total_mb: float = math.nan


@dataclass(frozen=True)
class WorkloadFeedback:
    """What a perception node reports (WorkloadStatus)."""
    active_subnet_id: str
    latency_p50_ms: float
    latency_p95_ms: float = math.nan
    input_rate_hz: float = math.nan
    output_rate_hz: float = math.nan


@dataclass
class PolicyConfig:
    latency_stat: str = "p95"               # table statistic compared with max_latency_ms (and fed back)
    up_margin: float = 0.10                 # headroom a *new* point needs (current one only needs to fit)
    frequency_margin: float = 0.08          # headroom a *new* lower frequency needs (same idea)
    frequency_down_dwell_s: float = 3.0     # lower the clock no sooner than this after the last change
    min_dwell_s: float = 1.0                # no non-urgent switch sooner than this after the last one
    accuracy_gain_min: float = 0.002        # a non-urgent move up must gain at least this (fraction)
    energy_gain_min: float = 0.05           # a non-urgent energy-motivated change must save >= 5 %
    feedback_alpha: float = 0.2             # EWMA weight of a new measured/predicted latency ratio
    feedback_settle_s: float = 0.5          # ignore status this long after a switch (window still mixed)
    feedback_clamp: tuple[float, float] = (0.25, 8.0)
    feedback_deadband: float = 0.05         # a point left while measured this much slower gets pinned
    pin_s: float = 10.0                     # ... and is not re-entered for this long (no bouncing)
    load_alpha: float = 0.3                 # EWMA of the background load ...
    load_spike: float = 0.2                 # ... except a rise by more than this is taken at once (a spike)
    contention_gain: float = 1.0            # latency x (1 + gain * busy share of co-runners)
    default_rate_hz: float = 30.0           # frame rate assumed until a status reports one
    throttle_c: float = 95.0                # hardware throttling temperature
    thermal_margin_c: float = 3.0           # hold the hottest zone this far below it
    thermal_gain: float = 0.05              # cap change per C of error per second
    thermal_hysteresis_c: float = 1.0       # raise the cap only this far below the set point
    thermal_min_cap: float = 0.5            # no lower than the hardware's own throttle would go
    thermal_saves_energy: bool = True       # while a thermal cap holds, pick points by energy (heat) like saving
    saving_below_percent: float = 40.0      # battery energy-saving mode
    critical_below_percent: float = 15.0
    battery_hysteresis_percent: float = 3.0
    saving_accuracy_tolerance: float = 0.02  # saving mode gives up at most this much accuracy for energy
    critical_frequency_cap: float = 0.7
    memory_budget_mb: float = 0.0           # 0 = unlimited: materialised points of all workloads together
    memory_reserve_mb: float = 256.0        # keep this much of the machine's memory free (PlatformLoad)
    time_budget_ms: float = 5.0             # the search returns its best so far after this
    frequency_applied: bool = True          # False (dry run): hardware stays at max, feedback knows it


@dataclass(frozen=True)
class SubnetChoice:
    workload: str
    point: OperatingPoint
    expected_latency_ms: float
    expected_energy_mj: float
    target_met: bool
    reason: str
    status: str                             # empty when met; else which constraint and why

    @property
    def subnet_id(self) -> str:
        return self.point.id


@dataclass(frozen=True)
class FrequencyChoice:
    domain: str
    frequency_hz: int
    governor: str
    reason: str


@dataclass
class PolicyDecision:
    subnets: dict[str, SubnetChoice]
    frequencies: list[FrequencyChoice]
    mode: str
    caps: dict[str, float]                  # frequency cap per processor kind (fraction of max)
    materialised: dict[str, list[str]]      # point ids each workload keeps resident
    search_ms: float
    truncated: bool                         # time budget hit: best so far returned


@dataclass
class _Workload:
    name: str
    device_key: str
    kind: str
    points: list[OperatingPoint]            # sorted fastest first
    base: list[float]                       # table latency of points (ms)
    target: Target
    rate_hz: float
    current: OperatingPoint | None = None
    last_switch: float = -math.inf
    urgent: bool = True                     # retarget pending: next decision may switch at once
    ratios: dict[str, float] = field(default_factory=dict)   # measured/modelled latency per point id
    pinned: dict[str, float] = field(default_factory=dict)   # point id -> until when it may not be re-entered
    pin_count: dict[str, int] = field(default_factory=dict)
    feedback: WorkloadFeedback | None = None
    predicted_raw_ms: float = math.nan      # model latency (no feedback) of the current point, last decision
    materialised: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)    # point id -> position in `points`


def processor_kind(device_key: str) -> str:
    proc = device_key.split("@", 1)[0]
    return "gpu" if proc in ("cuda", "gpu") else "cpu"


class ResourcePolicy:
    """Stateful policy; feed it targets, platform state and feedback, call `decide(now)`."""

    def __init__(self, domains: Iterable[FrequencyDomain], config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.domains = sorted(domains, key=lambda d: (d.kind, -d.max_hz, d.name))
        if not self.domains:
            raise ValueError("at least one frequency domain is needed (e.g. a generic cpu domain)")
        self._workloads: dict[str, _Workload] = {}
        self.platform = PlatformState()
        self._bg: dict[str, float] = {"cpu": 0.0, "gpu": 0.0}
        self.mode = "normal"
        self._thermal_cap: dict[str, float] = {}
        self._thermal_t: float | None = None
        self._freq_frac: dict[str, float] = {}       # current frequency fraction per kind
        self._freq_switch: dict[str, float] = {}
        self._now = 0.0
        self._objective = "normal"
        self._mem_budget = math.inf

    # ------------------------------------------------------------------------------------------ inputs

    def add_workload(self, name: str, table: OperatingPointTable, device_key: str, target: Target = Target(),
                     rate_hz: float = 0.0) -> None:
        try:  # "cpu" finds a table measured as "cpu@1t"
            device_key = table.device_for(device_key)
        except KeyError:
            raise ValueError(f"workload {name!r}: table was not measured on {device_key!r}; it has "
                             f"{list(table.devices)}") from None
        kind = processor_kind(device_key)
        if not any(d.kind == kind for d in self.domains):
            # e.g. a CUDA workload on a desktop profile: choose points, leave its clock alone
            self.domains.append(FrequencyDomain(f"{kind}_fixed", kind, (1,), compute_bound=0.0, static_w=0.0,
                                                dynamic_w=1.0, fixed=True))
        pts = sorted(table.points, key=lambda p: (p.latency(device_key, self.config.latency_stat), -p.accuracy))
        self._workloads[name] = _Workload(
            name=name, device_key=device_key, kind=kind, points=pts,
            base=[p.latency(device_key, self.config.latency_stat) for p in pts], target=target,
            rate_hz=rate_hz if rate_hz > 0 else self.config.default_rate_hz, index={p.id: i for i, p in enumerate(pts)})

    def workloads(self) -> list[str]:
        return list(self._workloads)

    def target(self, name: str) -> Target:
        return self._get(name).target

    def _get(self, name: str) -> _Workload:
        try:
            return self._workloads[name]
        except KeyError:
            raise UnknownWorkload(f"unknown workload {name!r}; configured: {sorted(self._workloads)}") from None

    def set_target(self, name: str, target: Target) -> None:
        w = self._get(name)
        if target != w.target:
            w.target = target
            w.urgent = True

    def update_platform(self, state: PlatformState) -> None:
        """New platform state. Background load = busy share not explained by our own workloads (their
        status rate x latency); smoothed, but a spike is taken at once."""
        self.platform = state
        own = {"cpu": 0.0, "gpu": 0.0}
        for w in self._workloads.values():
            fb = w.feedback
            if fb is not None and math.isfinite(fb.output_rate_hz) and math.isfinite(fb.latency_p50_ms):
                own[w.kind] += fb.output_rate_hz * fb.latency_p50_ms / 1000.0
        samples = {}
        if state.cpu_percent:
            n = len(state.cpu_percent)
            busy = sum(min(100.0, max(0.0, c)) for c in state.cpu_percent) / 100.0
            samples["cpu"] = max(0.0, busy - own["cpu"]) / n
        if math.isfinite(state.gpu_percent):
            samples["gpu"] = max(0.0, state.gpu_percent / 100.0 - own["gpu"])
        a = self.config.load_alpha
        for kind, s in samples.items():
            s = min(1.0, s)
            prev = self._bg[kind]
            self._bg[kind] = s if s - prev > self.config.load_spike else prev + a * (s - prev)

    def update_feedback(self, name: str, fb: WorkloadFeedback, now: float) -> None:
        """Measured latency of the point we chose corrects the model for that workload."""
        w = self._get(name)
        w.feedback = fb
        if math.isfinite(fb.input_rate_hz) and fb.input_rate_hz > 0:
            w.rate_hz = fb.input_rate_hz
        # compare like with like: the measured statistic the targets are judged on
        measured = fb.latency_p95_ms if self.config.latency_stat == "p95" and fb.latency_p95_ms > 0 else fb.latency_p50_ms
        if (w.current is None or fb.active_subnet_id != w.current.id or now - w.last_switch < self.config.feedback_settle_s
                or not (measured > 0) or not (w.predicted_raw_ms > 0)):
            return
        lo, hi = self.config.feedback_clamp
        sample = min(hi, max(lo, measured / w.predicted_raw_ms))
        r = w.ratios.get(w.current.id, 1.0)
        w.ratios[w.current.id] = r + self.config.feedback_alpha * (sample - r)

    def background_load(self, kind: str) -> float:
        return self._bg.get(kind, 0.0)

    def feedback_ratio(self, name: str) -> float:
        w = self._get(name)
        return w.ratios.get(w.current.id, 1.0) if w.current is not None else 1.0

    # ------------------------------------------------------------------------------------------ modes

    def _update_mode(self) -> None:
        c, b = self.config, self.platform.battery_percent
        if not math.isfinite(b) or self.platform.charging:
            self.mode = "normal"
            return
        h = c.battery_hysteresis_percent
        if b < c.critical_below_percent or (self.mode == "critical" and b < c.critical_below_percent + h):
            self.mode = "critical"
        elif b < c.saving_below_percent or (self.mode in ("saving", "critical") and b < c.saving_below_percent + h):
            self.mode = "saving"
        else:
            self.mode = "normal"

    def _update_thermal(self) -> None:
        """Scale down before the hardware throttles: an integral controller holds the hottest zone of each
        processor at `throttle_c - thermal_margin_c` with the highest sustainable frequency cap (a fixed
        map from temperature to cap gives away performance the cooling could sustain); within 1 C of the
        throttle point a proportional bound cuts in at once."""
        c = self.config
        setpoint = c.throttle_c - c.thermal_margin_c
        dt = min(2.0, max(0.0, self._now - self._thermal_t)) if self._thermal_t is not None else 0.0
        self._thermal_t = self._now
        for kind in ("cpu", "gpu"):
            temps = [t for z, t in self.platform.temperatures_c.items() if math.isfinite(t) and _zone_kind(z) in (kind, None)]
            if not temps:
                self._thermal_cap[kind] = 1.0
                continue
            hottest = max(temps)
            cap = self._thermal_cap.get(kind, 1.0)
            if hottest > setpoint:
                cap -= c.thermal_gain * (hottest - setpoint) * dt
            elif hottest < setpoint - c.thermal_hysteresis_c:
                cap += c.thermal_gain * (setpoint - c.thermal_hysteresis_c - hottest) * dt
            edge = c.throttle_c - 1.0
            if hottest > edge:
                cap = min(cap, 1.0 - min(1.0, hottest - edge) * (1.0 - c.thermal_min_cap))
            self._thermal_cap[kind] = min(1.0, max(c.thermal_min_cap, cap))

    def caps(self) -> dict[str, float]:
        out = {}
        for kind in ("cpu", "gpu"):
            cap = self._thermal_cap.get(kind, 1.0)
            if self.mode == "critical":
                cap = min(cap, self.config.critical_frequency_cap)
            out[kind] = cap
        return out

    # ------------------------------------------------------------------------------------------ decision

    def decide(self, now: float | None = None) -> PolicyDecision:
        now = time.monotonic() if now is None else now
        self._now = now
        t0 = time.perf_counter()
        deadline = t0 + self.config.time_budget_ms / 1000.0
        self._update_mode()
        self._update_thermal()
        caps = self.caps()
        thermally_limited = any(v < 1.0 - 1e-6 for k, v in self._thermal_cap.items())
        self._objective = ("thermal" if self.mode == "normal" and thermally_limited and self.config.thermal_saves_energy
                           else self.mode)
        subnets: dict[str, SubnetChoice] = {}
        freqs: list[FrequencyChoice] = []
        truncated = False
        self._mem_budget = self._memory_budget()
        mem_left = self._mem_budget
        order = sorted(self._workloads.values(), key=lambda w: (-w.target.priority, w.name))
        mem_min = {w.name: min(p.memory_mb for p in w.points) for w in order}
        # memory is shared by all processors: reserve the smallest point of every workload not yet placed
        reserve = sum(mem_min.values())
        for kind in ("cpu", "gpu"):
            group = [w for w in order if w.kind == kind]
            doms = [d for d in self.domains if d.kind == kind]
            if not doms:
                continue
            rep = doms[0]
            if not group:
                self._freq_frac[kind] = rep.levels_hz[0] / rep.max_hz
                freqs += [FrequencyChoice(d.name, d.levels_hz[0], "userspace", "no workload on this processor")
                          for d in doms if not d.fixed]
                continue
            choice, frac, freason, tr = self._decide_kind(kind, group, rep, caps[kind], now, deadline,
                                                          mem_left, reserve, mem_min)
            truncated |= tr
            for w in group:
                c = choice[w.name]
                subnets[w.name] = c
                mem_left -= c.point.memory_mb
                reserve -= mem_min[w.name]
            freqs += [FrequencyChoice(d.name, d.level_at_or_above(frac), "userspace", freason) for d in doms
                      if not d.fixed]
        materialised = self._materialise(order, subnets)
        return PolicyDecision(subnets=subnets, frequencies=freqs, mode=self.mode, caps=caps,
                              materialised=materialised, search_ms=(time.perf_counter() - t0) * 1000.0,
                              truncated=truncated)

    # The model of one workload at a frequency fraction under a contention factor.
    def _factor(self, w: _Workload, i: int) -> float:
        """Feedback correction, as in the reference runtime loop: the current point and faster ones
        (stepping down) take the current point's measured ratio; a slower point is predicted from the
        table (stepping up is optimistic) unless it was left for being measured too slow, then it is pinned
        to its own measured ratio for `pin_s` so the manager does not bounce straight back."""
        cur = w.current
        if cur is None:
            return 1.0
        p = w.points[i]
        if p is cur or w.base[i] <= w.base[w.index[cur.id]]:
            return w.ratios.get(cur.id, 1.0)
        if w.pinned.get(p.id, -math.inf) > self._now:
            return max(1.0, w.ratios.get(p.id, 1.0))
        return 1.0

    def _lat(self, w: _Workload, i: int, scale: float, contention: float) -> float:
        return w.base[i] * scale * contention * self._factor(w, i)

    def _util(self, w: _Workload, lat_ms: float) -> float:
        return min(1.0, lat_ms * w.rate_hz / 1000.0)

    def _decide_kind(self, kind: str, group: list[_Workload], rep: FrequencyDomain, cap: float, now: float,
                     deadline: float, mem_left: float, reserve: float, mem_min: dict[str, float]
                     ) -> tuple[dict[str, SubnetChoice], float, str, bool]:
        c = self.config
        gain = c.contention_gain
        bg = self._bg.get(kind, 0.0)
        levels = [f / rep.max_hz for f in rep.levels_hz]
        cap_frac = rep.level_at_or_above(cap) / rep.max_hz
        if cap_frac > cap + 1e-9:  # level_at_or_above rounds up; a cap must round down
            below = [f for f in levels if f <= cap + 1e-9]
            cap_frac = below[-1] if below else levels[0]
        s_cap = latency_scale(rep.compute_bound, cap_frac)
        # ---- step 1: operating points in priority order at the cap frequency
        min_util = {w.name: self._util(w, self._lat(w, 0, s_cap, 1.0 + gain * bg)) for w in group}
        placed: list[tuple[_Workload, int, float]] = []   # (workload, point index, util)
        choices: dict[str, tuple[int, str, str]] = {}
        truncated = False
        for w in group:
            others_min = sum(min_util[o.name] for o in group if o is not w and o.name not in choices)
            placed_u = sum(u for _, _, u in placed)
            contention = 1.0 + gain * (bg + placed_u + others_min)
            # never break a higher-priority workload that fits: cap this one's utilisation
            u_max = math.inf
            for pw, pi, pu in placed:
                t = pw.target.max_latency_ms
                if t <= 0:
                    continue
                cmax = t / (pw.base[pi] * s_cap * self._factor(pw, pi))
                others = bg + placed_u - pu + others_min
                if 1.0 + gain * (others + min_util[w.name]) <= cmax:
                    u_max = min(u_max, (cmax - 1.0) / gain - others)
            m_max = mem_left - (reserve - mem_min[w.name])
            i, reason, status = self._select(w, s_cap, contention, u_max, m_max, rep, cap_frac, now)
            lat = self._lat(w, i, s_cap, contention)
            placed.append((w, i, self._util(w, lat)))
            choices[w.name] = (i, reason, status)
            mem_left -= w.points[i].memory_mb
            reserve -= mem_min[w.name]
            if time.perf_counter() > deadline and w is not group[-1]:
                truncated = True   # keep the rest where they are (warm start) rather than overrun
                for o in group:
                    if o.name not in choices:
                        oi = o.index[o.current.id] if o.current is not None else 0
                        choices[o.name] = (oi, "kept (decision time budget reached)", "")
                        placed.append((o, oi, min_util[o.name]))
                break
        # ---- step 2: the lowest-energy frequency keeping every target that holds at the cap
        def evaluate(frac: float, margin: float = c.frequency_margin) -> tuple[bool, float, dict[str, float]]:
            s = latency_scale(rep.compute_bound, frac)
            lat0 = {pw.name: pw.base[pi] * s * self._factor(pw, pi) for pw, pi, _ in placed}
            utils = {n: min(1.0, l * self._workloads[n].rate_hz / 1000.0) for n, l in lat0.items()}
            tot = sum(utils.values())
            lats, ok = {}, True
            for pw, pi, _ in placed:
                cont = 1.0 + gain * (bg + tot - utils[pw.name])
                lats[pw.name] = lat0[pw.name] * cont
            for pw, pi, _ in placed:
                t = pw.target
                met_at_cap = not choices[pw.name][2]
                if met_at_cap and t.max_latency_ms > 0 and lats[pw.name] > t.max_latency_ms * (1 - margin):
                    ok = False
                if met_at_cap and t.max_energy_mj > 0 and self._energy(rep, frac, lats[pw.name]) > t.max_energy_mj:
                    ok = False
            util = min(1.0, bg + sum(min(1.0, l * self._workloads[n].rate_hz / 1000.0) for n, l in lats.items()))
            power = sum(d.power_w(d.level_at_or_above(frac), util) for d in self.domains if d.kind == kind)
            return ok, power, lats

        best_frac, best_power, best_lats = cap_frac, *evaluate(cap_frac, 0.0)[1:]
        # a workload already missing its latency bound at the cap gets the cap (best effort), never less
        best_effort = any(choices[pw.name][2].startswith("latency") for pw, _, _ in placed)
        for frac in reversed([f for f in levels if f < cap_frac - 1e-12 and not best_effort]):
            ok, power, lats = evaluate(frac)
            if not ok:
                break
            if power < best_power:
                best_frac, best_power, best_lats = frac, power, lats
            if time.perf_counter() > deadline:
                truncated = True
                break
        # frequency hysteresis: keep the current level when it still meets everything and saves little
        cur = self._freq_frac.get(kind)
        freason = f"lowest-energy {kind} level meeting every target ({best_frac * 100:.0f}% of max"
        if cur is not None and abs(cur - best_frac) > 1e-9 and cur <= cap_frac + 1e-9 and not best_effort:
            ok, power, lats = evaluate(cur, 0.0)
            recent = now - self._freq_switch.get(kind, -math.inf) < c.frequency_down_dwell_s
            if ok and (power <= best_power * (1 + c.energy_gain_min) or (recent and best_frac < cur)):
                best_frac, best_power, best_lats = cur, power, lats
                freason = f"{kind} level held (within hysteresis) ({cur * 100:.0f}% of max"
        if cur is None or abs(cur - best_frac) > 1e-9:
            self._freq_switch[kind] = now
        self._freq_frac[kind] = best_frac
        caps_txt = f", cap {cap_frac * 100:.0f}%" if cap_frac < 1 else ""
        freason += f"{caps_txt}, {self.mode} mode, background {bg * 100:.0f}%)"
        # ---- commit per-workload state and describe
        out: dict[str, SubnetChoice] = {}
        for pw, pi, _ in placed:
            i, reason, status = choices[pw.name]
            p = pw.points[i]
            lat = best_lats[pw.name]
            factor = self._factor(pw, pi)
            if p is not pw.current:
                old = pw.current
                if old is not None and p.accuracy < old.accuracy and w_ratio(pw, old) > 1.0 + c.feedback_deadband:
                    # left because it was measured slower than the table says: do not bounce straight back
                    t_ms = pw.target.max_latency_ms
                    oi = pw.index[old.id]
                    if t_ms > 0 and pw.base[oi] * s_cap * (1.0 + gain * bg) <= t_ms:
                        k = pw.pin_count[old.id] = pw.pin_count.get(old.id, 0) + 1
                        pw.pinned[old.id] = now + c.pin_s * 2 ** min(4, k - 1)   # repeated failures: longer
                pw.last_switch = now
                pw.current = p
                pw.ratios[p.id] = factor    # entered on this estimate; measurements take over after settling
            pw.urgent = False
            pw.predicted_raw_ms = lat / factor
            if not self.config.frequency_applied:
                pw.predicted_raw_ms = lat / factor / latency_scale(rep.compute_bound, best_frac)
            t = pw.target
            if not status:
                if t.max_latency_ms > 0 and lat > t.max_latency_ms:
                    status = f"predicted {lat:.1f} ms > {t.max_latency_ms:.1f} ms"
            out[pw.name] = SubnetChoice(pw.name, p, lat, self._energy(rep, best_frac, lat), not status, reason, status)
        return out, best_frac, freason, truncated

    def _energy(self, rep: FrequencyDomain, frac: float, lat_ms: float) -> float:
        """mJ per inference: the processor's modelled busy power times the latency."""
        return rep.power_w(rep.max_hz * frac, 1.0) * lat_ms

    def _select(self, w: _Workload, s_cap: float, contention: float, u_max: float, m_max: float,
                rep: FrequencyDomain, cap_frac: float, now: float) -> tuple[int, str, str]:
        """Index of the point for `w`, a reason, and a status (empty when every constraint is met)."""
        c, t = self.config, w.target
        cur = w.index[w.current.id] if w.current is not None else -1
        n = len(w.points)
        lat = [self._lat(w, i, s_cap, contention) for i in range(n)]
        energy = [self._energy(rep, cap_frac, lat[i]) for i in range(n)]
        fits_mem = [w.points[i].memory_mb <= m_max for i in range(n)]

        def lat_ok(i: int, strict: bool) -> bool:
            if t.max_latency_ms <= 0:
                return True
            bound = t.max_latency_ms * (1.0 if not strict else 1.0 - c.up_margin)
            return lat[i] <= bound and self._util(w, lat[i]) <= u_max + 1e-12

        cand = [i for i in range(n) if fits_mem[i] and lat_ok(i, strict=i != cur)]
        status = ""
        if not any(fits_mem):
            smallest = min(range(n), key=lambda i: w.points[i].memory_mb)
            return smallest, "smallest point (memory budget)", (
                f"memory: smallest point needs {w.points[smallest].memory_mb:.1f} MB, {max(0.0, m_max):.1f} MB left")
        if not cand:
            fast = next(i for i in range(n) if fits_mem[i])   # fastest by the table (points are sorted)
            why = (f"latency: fastest point {lat[fast]:.1f} ms > {t.max_latency_ms:.1f} ms at "
                   f"{cap_frac * 100:.0f}% {w.kind} frequency, contention x{contention:.2f}")
            if u_max < math.inf and lat[fast] <= t.max_latency_ms:
                why = "latency: no point fits beside higher-priority workloads"
            return fast, "best effort: fastest point", why
        acc_ok = [i for i in cand if w.points[i].accuracy >= t.min_accuracy]
        if not acc_ok:
            i = max(cand, key=lambda i: (w.points[i].accuracy, -lat[i]))
            return i, "best effort: most accurate point within latency", (
                f"accuracy: best within latency {w.points[i].accuracy:.3f} < {t.min_accuracy:.3f}")
        feas = [i for i in acc_ok if t.max_energy_mj <= 0 or energy[i] <= t.max_energy_mj]
        if not feas:
            feas = [min(acc_ok, key=lambda i: energy[i])]
            status = f"energy: lowest {energy[feas[0]]:.2f} mJ > {t.max_energy_mj:.2f} mJ"
        # objective by mode
        obj = self._objective
        if obj == "normal":
            best = max(feas, key=lambda i: (w.points[i].accuracy, -energy[i]))
            reason = "most accurate point meeting the targets"
        else:
            floor = t.min_accuracy
            if obj in ("saving", "thermal"):
                floor = max(floor, max(w.points[i].accuracy for i in feas) - c.saving_accuracy_tolerance)
            pool = [i for i in feas if w.points[i].accuracy >= floor - 1e-12]
            best = min(pool, key=lambda i: (energy[i], -w.points[i].accuracy))
            reason = ("lowest-energy point (thermally limited: less heat leaves headroom for the others)"
                      if obj == "thermal" else
                      f"lowest-energy point ({self.mode} mode, battery {self.platform.battery_percent:.0f}%)")
        if t.max_latency_ms > 0:
            reason += f", {lat[best]:.1f}/{t.max_latency_ms:.1f} ms"
        # hysteresis: stay unless the current point fails or the gain is worth a switch after the dwell
        if cur >= 0 and best != cur and not w.urgent and cur in feas:
            recent = now - w.last_switch < c.min_dwell_s
            if obj == "normal":
                small = w.points[best].accuracy - w.points[cur].accuracy < c.accuracy_gain_min
            else:
                small = energy[cur] - energy[best] < c.energy_gain_min * energy[cur]
            if recent or small:
                return cur, "kept (hysteresis: " + ("dwell time" if recent else "gain too small") + ")", status
        return best, reason, status

    def _memory_budget(self) -> float:
        """The configured budget, shrunk when the machine runs short of memory: what we hold now plus what
        is still available beyond `memory_reserve_mb` (AdaInfer's memory layer reacting to the platform)."""
        c, st = self.config, self.platform
        budget = c.memory_budget_mb if c.memory_budget_mb > 0 else math.inf
        if math.isfinite(st.memory_used_mb) and math.isfinite(st.memory_total_mb) and st.memory_total_mb > 0:
            held = sum(p.memory_mb for w in self._workloads.values() for p in w.points if p.id in w.materialised)
            budget = min(budget, max(0.0, held + st.memory_total_mb - st.memory_used_mb - c.memory_reserve_mb))
        return budget

    def _materialise(self, order: list[_Workload], subnets: dict[str, SubnetChoice]) -> dict[str, list[str]]:
        """Chosen points always; then, by priority, the neighbours most likely next (one faster, one more
        accurate), then the rest, while the memory budget lasts."""
        budget = self._mem_budget
        keep = {w.name: [subnets[w.name].point.id] for w in order if w.name in subnets}
        used = sum(subnets[n].point.memory_mb for n in subnets)
        for w in order:
            if w.name not in subnets:
                continue
            i = w.index[subnets[w.name].point.id]
            ring = sorted((j for j in range(len(w.points)) if j != i), key=lambda j: (abs(j - i), j > i))
            for j in ring:
                p = w.points[j]
                if used + p.memory_mb <= budget:
                    keep[w.name].append(p.id)
                    used += p.memory_mb
        for w in order:
            w.materialised = keep.get(w.name, [])
        return keep


def w_ratio(w: _Workload, p: OperatingPoint) -> float:
    return w.ratios.get(p.id, 1.0)


def _zone_kind(zone_type: str) -> str | None:
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
