"""Evolutionary search under a latency or FLOPs constraint, constraint sweeps and the Pareto filter.

The evolution is OFA's EvolutionFinder (used unchanged by Dynamic-OFA): keep the best `parent_ratio`
of the population, refill it with mutants (`mutation_ratio`) and crossovers of parents, every child
re-drawn until it meets the constraint. It works over an abstract space given as callbacks, so the
same code searches the OFA ImageNet space with OFA's predictor and note10 LUT, or our supernets with
our own predictor and profiled LUT. Predictions only rank; `pareto_front` runs on re-measured figures.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Sequence, TypeVar

T = TypeVar("T")


@dataclass
class SearchSpace(Generic[T]):
    """Callbacks that define a space for evolution; candidates must be hashable via `key`."""
    sample: Callable[[random.Random], T]
    mutate: Callable[[T, float, random.Random], T]
    crossover: Callable[[T, T, random.Random], T]
    key: Callable[[T], Hashable] = lambda x: x
    smallest: Callable[[], T] | None = None   # the cheapest candidate: seeds the population for tight limits


@dataclass
class EvolutionParams:
    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutation_prob: float = 0.1
    max_tries: int = 500          # per child, before giving up on a too-tight constraint
    seed: int = 0


@dataclass
class Candidate(Generic[T]):
    arch: T
    accuracy: float               # predicted
    cost: float                   # constrained metric (predicted latency ms or MFLOPs)


@dataclass
class SearchResult(Generic[T]):
    constraint: float
    best: Candidate[T]
    history: list[float] = field(default_factory=list)   # best predicted accuracy per generation
    wall_s: float = 0.0


class ConstraintError(RuntimeError):
    """No architecture meeting the constraint could be sampled."""


def _draw(make: Callable[[], T], cost: Callable[[T], float], limit: float, tries: int, what: str) -> tuple[T, float]:
    for _ in range(tries):
        x = make()
        c = cost(x)
        if c <= limit:
            return x, c
    raise ConstraintError(f"no {what} within constraint {limit:g} after {tries} tries "
                          f"(last cost {c:g}); the constraint is probably below the cheapest sub-network")


def evolve(space: SearchSpace[T], accuracy: Callable[[list[T]], Sequence[float]], cost: Callable[[T], float],
           limit: float, params: EvolutionParams = EvolutionParams()) -> SearchResult[T]:
    """Maximise predicted accuracy subject to cost(x) <= limit. `accuracy` scores a batch."""
    t0 = time.perf_counter()
    rng = random.Random(params.seed)
    n_parents = max(1, int(round(params.population * params.parent_ratio)))
    n_mutants = int(round(params.population * params.mutation_ratio))

    def scored(archs: list[T], costs: list[float]) -> list[Candidate[T]]:
        return [Candidate(a, float(s), c) for a, s, c in zip(archs, accuracy(archs), costs)]

    def initial() -> tuple[T, float]:
        try:
            return _draw(lambda: space.sample(rng), cost, limit, params.max_tries, "random sample")
        except ConstraintError:
            if space.smallest is None:
                raise
        base = space.smallest()
        if cost(base) > limit:
            raise ConstraintError(f"even the cheapest sub-network costs {cost(base):g} > constraint {limit:g}")
        try:
            return _draw(lambda: space.mutate(base, params.mutation_prob, rng), cost, limit, params.max_tries,
                         "mutant of the cheapest sub-network")
        except ConstraintError:  # a limit just above the cheapest: the cheapest itself is a valid member
            return base, cost(base)

    drawn = [initial() for _ in range(params.population)]
    population = scored([a for a, _ in drawn], [c for _, c in drawn])
    best = max(population, key=lambda c: c.accuracy)
    history = []
    for _ in range(params.generations):
        parents = sorted(population, key=lambda c: c.accuracy, reverse=True)[:n_parents]
        if parents[0].accuracy > best.accuracy:
            best = parents[0]
        history.append(best.accuracy)
        children = []
        for i in range(params.population - n_parents):
            if i < n_mutants:
                make = lambda: space.mutate(rng.choice(parents).arch, params.mutation_prob, rng)  # noqa: E731
            else:
                make = lambda: space.crossover(rng.choice(parents).arch, rng.choice(parents).arch, rng)  # noqa: E731
            try:
                children.append(_draw(make, cost, limit, params.max_tries, "child"))
            except ConstraintError:  # near the smallest network few children fit: keep a parent instead
                p = rng.choice(parents)
                children.append((p.arch, p.cost))
        population = parents + scored([a for a, _ in children], [c for _, c in children])
    top = max(population, key=lambda c: c.accuracy)
    if top.accuracy > best.accuracy:
        best = top
    return SearchResult(constraint=limit, best=best, history=history, wall_s=time.perf_counter() - t0)


def sweep(space: SearchSpace[T], accuracy: Callable[[list[T]], Sequence[float]], cost: Callable[[T], float],
          limits: Sequence[float], params: EvolutionParams = EvolutionParams(),
          progress: Callable[[SearchResult[T]], None] | None = None,
          on_skip: Callable[[float, str], None] | None = None) -> list[SearchResult[T]]:
    """One evolution per constraint value (as Dynamic-OFA does). Limits that no sub-network meets are
    reported through `on_skip`; ConstraintError only if every limit fails."""
    results: list[SearchResult[T]] = []
    errors: list[str] = []
    for i, limit in enumerate(limits):
        try:
            r = evolve(space, accuracy, cost, limit, EvolutionParams(**{**params.__dict__, "seed": params.seed + i}))
        except ConstraintError as exc:
            errors.append(str(exc))
            if on_skip:
                on_skip(limit, str(exc))
            continue
        results.append(r)
        if progress:
            progress(r)
    if not results:
        raise ConstraintError("; ".join(errors))
    return results


def unique_candidates(results: Sequence[SearchResult[T]], key: Callable[[T], Hashable]) -> list[T]:
    """Distinct best architectures of a sweep, in sweep order (several limits often find the same)."""
    seen: set[Hashable] = set()
    out = []
    for r in results:
        k = key(r.best.arch)
        if k not in seen:
            seen.add(k)
            out.append(r.best.arch)
    return out


# ---------------------------------------------------------------------------------------- Pareto

def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """a dominates b: no worse in every objective, strictly better in one. senses: 'min' | 'max'."""
    better = False
    for x, y, s in zip(a, b, senses):
        if s == "max":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def pareto_front(items: Sequence[Any], objectives: Callable[[Any], Sequence[float]],
                 senses: Sequence[str] = ("min", "max", "min")) -> list[Any]:
    """Non-dominated items (default objectives: latency min, accuracy max, memory min), input order kept.
    Exact duplicates in objective space keep only the first."""
    objs = [tuple(objectives(x)) for x in items]
    keep = []
    for i, oi in enumerate(objs):
        if any(dominates(oj, oi, senses) for j, oj in enumerate(objs) if j != i):
            continue
        if any(objs[j] == oi for j in keep):
            continue
        keep.append(i)
    return [items[i] for i in keep]


# ------------------------------------------------------------------- OFA-style block-slot spaces

@dataclass(frozen=True)
class SlotArch:
    """Fixed-length form of an MBv3 sub-network: kernel and expand per block slot, depth per stage,
    resolution (slots past a stage's depth carry values that are ignored)."""
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int

    def canonical(self, min_k: int, min_e: int) -> "SlotArch":
        """Skipped slots set to the minima, so equal networks compare (and hash) equal."""
        spd = len(self.ks) // len(self.d)
        ks = tuple(k if i % spd < self.d[i // spd] else min_k for i, k in enumerate(self.ks))
        e = tuple(x if i % spd < self.d[i // spd] else min_e for i, x in enumerate(self.e))
        return SlotArch(ks, e, self.d, self.r)

    def as_ofa(self) -> dict[str, list[int]]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": [self.r]}


def slot_space(ks_list: Sequence[int], e_list: Sequence[int], d_list: Sequence[int],
               resolutions: Sequence[int], n_stages: int = 5) -> SearchSpace[SlotArch]:
    """OFA's MBv3 search space callbacks (sampling, per-gene mutation, uniform crossover)."""
    spd = max(d_list)
    n = n_stages * spd
    mk, me = min(ks_list), min(e_list)

    def sample(rng: random.Random) -> SlotArch:
        return SlotArch(tuple(rng.choice(ks_list) for _ in range(n)), tuple(rng.choice(e_list) for _ in range(n)),
                        tuple(rng.choice(d_list) for _ in range(n_stages)), rng.choice(resolutions)).canonical(mk, me)

    def mutate(a: SlotArch, prob: float, rng: random.Random) -> SlotArch:
        pick = lambda v, choices: rng.choice(choices) if rng.random() < prob else v  # noqa: E731
        return SlotArch(tuple(pick(k, ks_list) for k in a.ks), tuple(pick(x, e_list) for x in a.e),
                        tuple(pick(x, d_list) for x in a.d), pick(a.r, resolutions)).canonical(mk, me)

    def crossover(a: SlotArch, b: SlotArch, rng: random.Random) -> SlotArch:
        mix = lambda x, y: tuple(rng.choice((p, q)) for p, q in zip(x, y))  # noqa: E731
        return SlotArch(mix(a.ks, b.ks), mix(a.e, b.e), mix(a.d, b.d), rng.choice((a.r, b.r))).canonical(mk, me)

    def smallest() -> SlotArch:
        return SlotArch((mk,) * n, (me,) * n, (min(d_list),) * n_stages, min(resolutions))

    return SearchSpace(sample=sample, mutate=mutate, crossover=crossover, smallest=smallest)


@dataclass
class AdditiveSlotCost:
    """A per-layer-LUT cost, precomputed: cost(a) = base[r] + the active slots' own costs.

    In a fixed-width MBv3 space a block's layer (and so its LUT entry) depends only on its slot, its own
    kernel and expand and the resolution, so a LUT walk (string keys for ~25 layers per candidate) becomes
    ~20 lookups, and the space's true cheapest and dearest sub-networks follow exactly, per stage, instead
    of being assumed to be k3/e3/d2 (not the cheapest on the Jetson GPU table, for one).
    """
    base: dict[int, float]
    slots: dict[int, list[dict[tuple[int, int], float]]]   # r -> slot -> (kernel, expand) -> cost
    depths: tuple[int, ...]
    n_stages: int

    def __call__(self, a: SlotArch) -> float:
        spd = len(a.ks) // self.n_stages
        table = self.slots[a.r]
        return self.base[a.r] + sum(table[i][(a.ks[i], a.e[i])] for i in range(len(a.ks)) if i % spd < a.d[i // spd])

    def extreme(self, cheapest: bool = True) -> tuple[SlotArch, float]:
        """The exact cheapest (or dearest) sub-network over every resolution, with its cost."""
        pick = min if cheapest else max
        best: tuple[SlotArch, float] | None = None
        for r, table in self.slots.items():
            spd = len(table) // self.n_stages
            choice = [pick(costs, key=costs.get) for costs in table]   # each slot's own best (k, e)
            depth = [pick(self.depths, key=lambda d, s=s: sum(table[s * spd + j][choice[s * spd + j]]
                                                                for j in range(d)))
                     for s in range(self.n_stages)]
            arch = SlotArch(tuple(k for k, _ in choice), tuple(e for _, e in choice), tuple(depth), r)
            cost = self(arch)
            if best is None or (cost < best[1] if cheapest else cost > best[1]):
                best = (arch, cost)
        assert best is not None, "no resolutions"
        return best


def additive_slot_cost(exact: Callable[[SlotArch], float], ks_list: Sequence[int], e_list: Sequence[int],
                       d_list: Sequence[int], resolutions: Sequence[int], n_stages: int = 5,
                       checks: int = 64, seed: int = 0) -> AdditiveSlotCost | None:
    """Decompose `exact` into base + per-slot costs by probing one slot at a time, then check the sum
    against `exact` on random sub-networks; None when the cost is not additive (use `exact` then)."""
    spd, lo, hi = max(d_list), min(d_list), max(d_list)
    k0, e0 = min(ks_list), min(e_list)
    n = n_stages * spd
    base: dict[int, float] = {}
    slots: dict[int, list[dict[tuple[int, int], float]]] = {}
    for r in resolutions:
        ref = SlotArch((k0,) * n, (e0,) * n, (hi,) * n_stages, r)
        ref_cost = exact(ref)
        own = [dict() for _ in range(n)]
        for i in range(n):
            stage, j = divmod(i, spd)
            alone = 0.0  # the slot's cost at (k0, e0): 0 for slots every depth keeps (folded into base)
            if j >= lo:  # the stage with and without this slot as its last block: the slot's own cost
                depth = lambda x, st=stage: tuple(x if s == st else hi for s in range(n_stages))  # noqa: E731
                alone = exact(SlotArch(ref.ks, ref.e, depth(j + 1), r)) - exact(SlotArch(ref.ks, ref.e, depth(j), r))
            for k in ks_list:
                for e in e_list:
                    ks, es = list(ref.ks), list(ref.e)
                    ks[i], es[i] = k, e
                    own[i][(k, e)] = alone + exact(SlotArch(tuple(ks), tuple(es), ref.d, r)) - ref_cost
        slots[r] = own
        base[r] = ref_cost - sum(own[i][(k0, e0)] for i in range(n))
    model = AdditiveSlotCost(base, slots, tuple(d_list), n_stages)
    rng = random.Random(seed)
    space = slot_space(ks_list, e_list, d_list, resolutions, n_stages)
    for _ in range(checks):
        a = space.sample(rng)
        if not math.isclose(model(a), exact(a), rel_tol=1e-6, abs_tol=1e-9):
            return None
    return model


def cost_extremes(space: SearchSpace[T], cost: Callable[[T], float],
                  params: EvolutionParams = EvolutionParams(generations=100)) -> tuple[tuple[T, float], tuple[T, float]]:
    """(cheapest, cost) and (dearest, cost) of the space: exact for an additive cost, else found by
    evolution on the cost itself (a search, not an assumption about which corner is cheapest)."""
    if isinstance(cost, AdditiveSlotCost):
        return cost.extreme(True), cost.extreme(False)
    low = evolve(space, lambda xs: [-cost(x) for x in xs], cost, math.inf, params).best
    high = evolve(space, lambda xs: [cost(x) for x in xs], cost, math.inf, params).best
    return (low.arch, low.cost), (high.arch, high.cost)


@dataclass
class CostModel:
    """What a sweep needs of its constraint metric: the cost function and the space's true cost range."""
    cost: Callable[[SlotArch], float]
    cheapest: SlotArch
    low: float
    high: float
    additive: bool

    def default_limits(self, n: int) -> list[float]:
        """n limits from just above the cheapest sub-network to the dearest."""
        lo = self.low * 1.02
        return [lo + (self.high - lo) * i / max(1, n - 1) for i in range(n)]


def slot_cost_model(exact: Callable[[SlotArch], float], ks_list: Sequence[int], e_list: Sequence[int],
                    d_list: Sequence[int], resolutions: Sequence[int]) -> CostModel:
    """`exact` precomputed per slot when additive, with the cost range found over the whole space."""
    model = additive_slot_cost(exact, ks_list, e_list, d_list, resolutions)
    cost = model if model is not None else exact
    (cheapest, low), (_, high) = cost_extremes(slot_space(ks_list, e_list, d_list, resolutions), cost)
    return CostModel(cost, cheapest, low, high, model is not None)


def with_true_cheapest(space: SearchSpace[T], cheapest: T) -> SearchSpace[T]:
    """`space` seeding tight limits from the real cheapest sub-network instead of the nominal smallest."""
    return SearchSpace(space.sample, space.mutate, space.crossover, space.key, lambda: cheapest)


def slot_encode(a: SlotArch, ks_list: Sequence[int], e_list: Sequence[int], resolutions: Sequence[int]) -> list[float]:
    """Features for the project's own predictor: OFA's one-hot layout (kernel per slot, expand per slot,
    all-zero for skipped slots) with a one-hot over this space's resolutions."""
    spd = len(a.ks) // len(a.d)
    x = [0.0] * (len(a.ks) * (len(ks_list) + len(e_list)) + len(resolutions))
    off_e = len(a.ks) * len(ks_list)
    for i, (k, e) in enumerate(zip(a.ks, a.e)):
        if i % spd < a.d[i // spd]:
            x[i * len(ks_list) + list(ks_list).index(k)] = 1.0
            x[off_e + i * len(e_list) + list(e_list).index(e)] = 1.0
    x[off_e + len(a.ks) * len(e_list) + list(resolutions).index(a.r)] = 1.0
    return x
