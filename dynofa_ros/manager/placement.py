"""Step 1 of a decision: operating points of one processor's workloads, in priority order, at the capped
frequency, each under the contention of those already placed and never breaking a higher-priority
workload's latency bound."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from dynofa_ros.manager.memory import MemoryLedger
from dynofa_ros.manager.selection import KindContext, select_point
from dynofa_ros.manager.workload import WorkloadState


@dataclass(frozen=True)
class Placed:
    w: WorkloadState
    i: int                  # point index
    util: float             # busy share at the cap
    reason: str
    status: str             # empty when every constraint is met at the cap


def _u_max(w: WorkloadState, placed: list[Placed], ctx: KindContext, others: float, own_min: float) -> float:
    """The most utilisation `w` may take without pushing a placed workload past its latency bound."""
    u_max, gain = math.inf, ctx.gain
    placed_u = sum(p.util for p in placed)
    for p in placed:
        t = p.w.target.max_latency_ms
        if t <= 0:
            continue
        cmax = t / (p.w.base[p.i] * ctx.s_cap * p.w.factors(ctx.now)[p.i])
        rest = ctx.bg + placed_u - p.util + others
        if 1.0 + gain * (rest + own_min) <= cmax:
            u_max = min(u_max, (cmax - 1.0) / gain - rest)
    return u_max


def place(group: list[WorkloadState], ctx: KindContext, memory: MemoryLedger) -> tuple[list[Placed], bool]:
    """Placements in priority order, and whether the time budget cut the search short (the rest then
    keep their current points: a warm start rather than an overrun)."""
    gain, bg = ctx.gain, ctx.bg
    min_util = {w.name: w.util(w.base[0] * ctx.s_cap * (1.0 + gain * bg) * w.factors(ctx.now)[0]) for w in group}
    placed: list[Placed] = []
    for k, w in enumerate(group):
        others_min = sum(min_util[o.name] for o in group[k + 1:])
        contention = 1.0 + gain * (bg + sum(p.util for p in placed) + others_min)
        u_max = _u_max(w, placed, ctx, others_min, min_util[w.name])
        i, reason, status = select_point(w, ctx, contention, u_max, memory.room_for(w.name))
        lat = w.base[i] * ctx.s_cap * contention * w.factors(ctx.now)[i]
        placed.append(Placed(w, i, w.util(lat), reason, status))
        memory.take(w.name, w.points[i].memory_mb)
        if time.perf_counter() > ctx.deadline and k + 1 < len(group):
            for o in group[k + 1:]:
                oi = max(0, o.current_index)
                placed.append(Placed(o, oi, min_util[o.name], "kept (decision time budget reached)", ""))
                memory.take(o.name, o.points[oi].memory_mb)
            return placed, True
    return placed, False
