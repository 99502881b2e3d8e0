"""The operating point of one workload at the capped frequency: candidates, objective, hysteresis."""
from __future__ import annotations

import math
from dataclasses import dataclass

from dynofa_ros.dvfs_model import FrequencyDomain, PowerTable
from dynofa_ros.manager.hysteresis import dwell_hold, gain_hold
from dynofa_ros.manager.types import PolicyConfig
from dynofa_ros.manager.workload import WorkloadState


@dataclass(frozen=True)
class KindContext:
    """What one processor kind's decision works with, fixed for the decision."""
    kind: str
    rep: FrequencyDomain                    # the domain whose levels and model stand for the kind
    power: PowerTable                       # every domain of the kind, per level of `rep`
    cap_index: int                          # highest level at or below the cap
    s_cap: float                            # latency scale at the cap
    bg: float                               # background load share
    busy_power_w: float                     # modelled busy power at the cap (energy = power x latency)
    objective: str                          # normal | saving | critical | thermal
    mode: str
    battery_percent: float
    now: float
    deadline: float                         # perf_counter time the search must stop at
    config: PolicyConfig

    @property
    def gain(self) -> float:
        return self.config.contention_gain

    @property
    def cap_frac(self) -> float:
        return self.power.fracs[self.cap_index]


@dataclass(frozen=True)
class Estimates:
    """Model latency (ms) and energy (mJ) of every point of a workload under one contention."""
    lat: list[float]
    energy: list[float]
    accuracy: list[float]
    fits_mem: list[bool]


def estimate(w: WorkloadState, ctx: KindContext, contention: float, m_max: float) -> Estimates:
    scale = ctx.s_cap * contention
    lat = [b * scale * f for b, f in zip(w.base, w.factors(ctx.now))]
    return Estimates(lat, [ctx.busy_power_w * x for x in lat], [p.accuracy for p in w.points],
                     [p.memory_mb <= m_max for p in w.points])


def candidates(w: WorkloadState, est: Estimates, u_max: float, config: PolicyConfig) -> list[int]:
    """Points within memory and the latency bound (a new point needs `up_margin` headroom, the current
    one only has to fit) without pushing higher-priority workloads past theirs (`u_max`)."""
    bound, cur = w.target.max_latency_ms, w.current_index
    out = []
    for i, lat in enumerate(est.lat):
        if not est.fits_mem[i]:
            continue
        if bound > 0 and (lat > bound * (1.0 if i == cur else 1.0 - config.up_margin)
                          or w.util(lat) > u_max + 1e-12):
            continue
        out.append(i)
    return out


def within_energy(w: WorkloadState, est: Estimates, pool: list[int], config: PolicyConfig) -> list[int]:
    """Points of `pool` within the energy bound, with the same headroom rule as latency."""
    bound, cur = w.target.max_energy_mj, w.current_index
    if bound <= 0:
        return pool
    return [i for i in pool if est.energy[i] <= bound * (1.0 if i == cur else 1.0 - config.up_margin)]


def best_effort(w: WorkloadState, ctx: KindContext, est: Estimates, cand: list[int], contention: float,
                u_max: float, m_max: float) -> tuple[int, str, str] | None:
    """The answer when the latency, accuracy or memory bound cannot be met (None when it can)."""
    t = w.target
    if not any(est.fits_mem):
        smallest = min(range(len(w.points)), key=lambda i: w.points[i].memory_mb)
        return smallest, "smallest point (memory budget)", (
            f"memory: smallest point needs {w.points[smallest].memory_mb:.1f} MB, {max(0.0, m_max):.1f} MB left")
    if not cand:
        fast = est.fits_mem.index(True)   # fastest by the table that fits (points are sorted)
        why = (f"latency: fastest point {est.lat[fast]:.1f} ms > {t.max_latency_ms:.1f} ms at "
               f"{ctx.cap_frac * 100:.0f}% {w.kind} frequency, contention x{contention:.2f}")
        if u_max < math.inf and est.lat[fast] <= t.max_latency_ms:
            why = "latency: no point fits beside higher-priority workloads"
        return fast, "best effort: fastest point", why
    if not any(est.accuracy[i] >= t.min_accuracy for i in cand):
        i = max(cand, key=lambda i: (est.accuracy[i], -est.lat[i]))
        return i, "best effort: most accurate point within latency", (
            f"accuracy: best within latency {est.accuracy[i]:.3f} < {t.min_accuracy:.3f}")
    return None


def objective_best(w: WorkloadState, ctx: KindContext, est: Estimates, feas: list[int]) -> tuple[int, str]:
    """The best feasible point for the decision's objective, and why."""
    acc, energy = est.accuracy, est.energy
    if ctx.objective == "normal":
        return max(feas, key=lambda i: (acc[i], -energy[i])), "most accurate point meeting the targets"
    floor = w.target.min_accuracy
    if ctx.objective in ("saving", "thermal"):
        floor = max(floor, max(acc[i] for i in feas) - ctx.config.saving_accuracy_tolerance)
    best = min((i for i in feas if acc[i] >= floor - 1e-12), key=lambda i: (energy[i], -acc[i]))
    if ctx.objective == "thermal":
        return best, "lowest-energy point (thermally limited: less heat leaves headroom for the others)"
    return best, f"lowest-energy point ({ctx.mode} mode, battery {ctx.battery_percent:.0f}%)"


def select_point(w: WorkloadState, ctx: KindContext, contention: float, u_max: float,
                 m_max: float) -> tuple[int, str, str]:
    """Index of the point for `w`, a reason, and a status (empty when every constraint is met)."""
    c, t = ctx.config, w.target
    est = estimate(w, ctx, contention, m_max)
    cand = candidates(w, est, u_max, c)
    early = best_effort(w, ctx, est, cand, contention, u_max, m_max)
    if early is not None:
        return early
    acc_ok = [i for i in cand if est.accuracy[i] >= t.min_accuracy]
    feas, status, objective = within_energy(w, est, acc_ok, c), "", ctx.objective
    if not feas:   # no point meets the energy bound: the lowest-energy one (and judge gains by energy)
        feas, objective = [min(acc_ok, key=lambda i: est.energy[i])], "energy"
        status = f"energy: lowest {est.energy[feas[0]]:.2f} mJ > {t.max_energy_mj:.2f} mJ"
    best, reason = objective_best(w, ctx, est, feas)
    if t.max_latency_ms > 0:
        reason += f", {est.lat[best]:.1f}/{t.max_latency_ms:.1f} ms"
    cur = w.current_index
    # urgent (no hold): a retarget, or the current point misses its latency, accuracy or memory bound
    if cur >= 0 and best != cur and not w.urgent and cur in acc_ok:
        held = dwell_hold(w, best, ctx.now, c) or (
            gain_hold(objective, cur, best, est.accuracy, est.energy, c) if cur in feas or objective == "energy"
            else "")
        if held:
            if cur not in feas and not status:
                status = f"energy: {est.energy[cur]:.2f} mJ > {t.max_energy_mj:.2f} mJ (kept: {held})"
            return cur, f"kept (hysteresis: {held})", status
    return best, reason, status
