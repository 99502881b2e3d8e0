"""Step 2 of a decision: per processor, the lowest-energy DVFS level at which every target that holds at
the cap still holds, with hysteresis; stale inputs keep the cap (no energy-motivated lowering)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from dynofa_ros.dvfs_model import latency_scale
from dynofa_ros.manager.placement import Placed
from dynofa_ros.manager.selection import KindContext


@dataclass(frozen=True)
class LevelPlan:
    """The model at one frequency fraction: whether it keeps the targets met at the cap, its power, and
    every workload's latency there."""
    k: int                  # level index (PowerTable)
    frac: float
    ok: bool
    power_w: float
    lats: dict[str, float]


def evaluate(placed: list[Placed], ctx: KindContext, k: int, margin: float) -> LevelPlan:
    frac = ctx.power.fracs[k]
    s = latency_scale(ctx.rep.compute_bound, frac)
    lat0 = {p.w.name: p.w.base[p.i] * s * p.w.factors(ctx.now)[p.i] for p in placed}
    utils = {p.w.name: p.w.util(lat0[p.w.name]) for p in placed}
    tot = sum(utils.values())
    busy = ctx.power.busy_w[k]
    lats, ok = {}, True
    for p in placed:
        name, t = p.w.name, p.w.target
        lat = lats[name] = lat0[name] * (1.0 + ctx.gain * (ctx.bg + tot - utils[name]))
        if p.status:   # not met at the cap: this level cannot make it worse than best effort
            continue
        if t.max_latency_ms > 0 and lat > t.max_latency_ms * (1 - margin):
            ok = False
        if t.max_energy_mj > 0 and busy * lat > t.max_energy_mj:
            ok = False
    util = min(1.0, ctx.bg + sum(p.w.util(lats[p.w.name]) for p in placed))
    return LevelPlan(k, frac, ok, ctx.power.power_w(k, util), lats)


class FrequencyPlanner:
    """Remembers each kind's current level and when it last changed (the hysteresis needs both)."""

    def __init__(self) -> None:
        self.frac: dict[str, float] = {}
        self.switched: dict[str, float] = {}

    def idle(self, kind: str, lowest_frac: float) -> None:
        self.frac[kind] = lowest_frac

    def choose(self, placed: list[Placed], ctx: KindContext, stale: tuple[str, ...]) -> tuple[LevelPlan, str, bool]:
        """The level for `ctx.kind`, its reason, and whether the time budget cut the search short."""
        kind, cap = ctx.kind, ctx.cap_frac
        at_cap = evaluate(placed, ctx, ctx.cap_index, 0.0)
        # a workload already missing its latency bound at the cap gets the cap (best effort), never less
        best_effort = any(p.status.startswith("latency") for p in placed)
        if stale:
            plan, why, truncated = at_cap, f"{kind} level held at the cap: stale inputs ({', '.join(stale)})", False
        elif best_effort:
            plan, why, truncated = at_cap, f"{kind} level at the cap (a latency target is missed there)", False
        else:
            plan, truncated = self._search(placed, ctx, at_cap)
            plan, why = self._hold(placed, ctx, plan)
        if kind not in self.frac or abs(self.frac[kind] - plan.frac) > 1e-9:
            self.switched[kind] = ctx.now
        self.frac[kind] = plan.frac
        caps_txt = f", cap {cap * 100:.0f}%" if cap < 1 else ""
        why += f" ({plan.frac * 100:.0f}% of max{caps_txt}, {ctx.mode} mode, background {ctx.bg * 100:.0f}%)"
        return plan, why, truncated

    def _search(self, placed: list[Placed], ctx: KindContext, best: LevelPlan) -> tuple[LevelPlan, bool]:
        """Walk down from the cap while every target still holds; the lowest-power level wins."""
        for k in range(ctx.cap_index - 1, -1, -1):
            plan = evaluate(placed, ctx, k, ctx.config.frequency_margin)
            if not plan.ok:
                break
            if plan.power_w < best.power_w:
                best = plan
            if time.perf_counter() > ctx.deadline:
                return best, True
        return best, False

    def _hold(self, placed: list[Placed], ctx: KindContext, best: LevelPlan) -> tuple[LevelPlan, str]:
        """Keep the current level when it still meets everything and the change saves little, or when
        it would be lowered again within `frequency_down_dwell_s`."""
        c, kind = ctx.config, ctx.kind
        cur = self.frac.get(kind)
        if cur is not None and abs(cur - best.frac) > 1e-9 and cur <= ctx.cap_frac + 1e-9:
            held = evaluate(placed, ctx, ctx.power.index(cur), 0.0)
            recent = ctx.now - self.switched.get(kind, -math.inf) < c.frequency_down_dwell_s
            if held.ok and (held.power_w <= best.power_w * (1 + c.energy_gain_min) or (recent and best.frac < cur)):
                return held, f"{kind} level held (within hysteresis)"
        return best, f"lowest-energy {kind} level meeting every target"
