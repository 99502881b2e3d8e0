"""Memory: the budget for materialised points (shrinks when the machine runs short), the ledger the
placement draws on, and which points stay resident (AdaInfer's memory layer)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from dynofa_ros.manager.types import PlatformState, PolicyConfig, SubnetChoice
from dynofa_ros.manager.workload import WorkloadState


def memory_budget(config: PolicyConfig, platform: PlatformState, workloads: list[WorkloadState]) -> float:
    """The configured budget, shrunk when the machine runs short of memory: what we hold now plus what
    is still available beyond `memory_reserve_mb`."""
    budget = config.memory_budget_mb if config.memory_budget_mb > 0 else math.inf
    used, total = platform.memory_used_mb, platform.memory_total_mb
    if math.isfinite(used) and math.isfinite(total) and total > 0:
        held = sum(p.memory_mb for w in workloads for p in w.points if p.id in w.materialised)
        budget = min(budget, max(0.0, held + total - used - config.memory_reserve_mb))
    return budget


@dataclass
class MemoryLedger:
    """Memory is shared by all processors: while placing, the smallest point of every workload not yet
    placed stays reserved."""
    left: float
    reserve: float
    smallest: dict[str, float]

    @classmethod
    def for_workloads(cls, budget: float, workloads: list[WorkloadState]) -> "MemoryLedger":
        smallest = {w.name: min(p.memory_mb for p in w.points) for w in workloads}
        return cls(budget, sum(smallest.values()), smallest)

    def room_for(self, name: str) -> float:
        return self.left - (self.reserve - self.smallest[name])

    def take(self, name: str, mb: float) -> None:
        self.left -= mb
        self.reserve -= self.smallest[name]


def materialise(order: list[WorkloadState], subnets: dict[str, SubnetChoice], budget: float) -> dict[str, list[str]]:
    """Chosen points always; then, by priority, the neighbours most likely next (one faster, one more
    accurate), then the rest, while the memory budget lasts."""
    keep = {w.name: [subnets[w.name].point.id] for w in order if w.name in subnets}
    used = sum(subnets[n].point.memory_mb for n in subnets)
    for w in order:
        if w.name not in subnets:
            continue
        for j in w.ring(w.index[subnets[w.name].point.id]):
            p = w.points[j]
            if used + p.memory_mb <= budget:
                keep[w.name].append(p.id)
                used += p.memory_mb
    for w in order:
        w.materialised = keep.get(w.name, [])
    return keep
