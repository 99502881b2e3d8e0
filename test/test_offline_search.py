"""Evolutionary search and the Pareto filter (synthetic objectives, so the checks are exact and fast)."""
from __future__ import annotations

import random

import pytest

from dynofa_ros.offline.search import (ConstraintError, EvolutionParams, SlotArch, additive_slot_cost,
                                       cost_extremes, dominates, evolve, pareto_front, slot_cost_model, slot_encode,
                                       slot_space, sweep, unique_candidates, with_true_cheapest)

KS, ES, DS, RS = (3, 5, 7), (3, 4, 6), (2, 3, 4), (16, 20, 24, 28, 32)


def _cost(a: SlotArch) -> float:
    """Latency-like: grows with depth, kernel, expand and resolution squared."""
    spd = 4
    work = sum(k * k / 9 + e for i, (k, e) in enumerate(zip(a.ks, a.e)) if i % spd < a.d[i // spd])
    return work * (a.r / 16) ** 2


def _accuracy(archs: list[SlotArch]) -> list[float]:
    """Saturating in cost, with a small architecture-dependent term so ties are rare."""
    return [0.95 - 0.3 / (1 + _cost(a) / 20) + 0.001 * sum(a.ks) / len(a.ks) for a in archs]


def test_pareto_front_non_dominated_and_complete():
    rng = random.Random(1)
    pts = [(rng.uniform(1, 10), rng.uniform(0.5, 0.9), rng.uniform(1, 5)) for _ in range(300)]
    pts.append(pts[0])  # exact duplicate kept once
    front = pareto_front(pts, lambda p: p)
    senses = ("min", "max", "min")
    assert front and len(front) == len(set(front))
    for a in front:
        assert not any(dominates(b, a, senses) for b in pts)
    for p in pts:
        if p not in front:
            assert any(dominates(f, p, senses) for f in front)


def test_dominates():
    assert dominates((1, 0.9, 1), (2, 0.8, 1), ("min", "max", "min"))
    assert not dominates((1, 0.9, 1), (1, 0.9, 1), ("min", "max", "min"))
    assert not dominates((1, 0.7, 1), (2, 0.8, 1), ("min", "max", "min"))


def test_space_callbacks_stay_in_space():
    space = slot_space(KS, ES, DS, RS)
    rng = random.Random(0)
    for _ in range(200):
        a = space.sample(rng)
        b = space.mutate(a, 0.5, rng)
        c = space.crossover(a, b, rng)
        for x in (a, b, c):
            assert set(x.ks) <= set(KS) and set(x.e) <= set(ES) and set(x.d) <= set(DS) and x.r in RS
            assert x == x.canonical(3, 3)
            assert sum(slot_encode(x, KS, ES, RS)) == 2 * sum(x.d) + 1


def test_sweep_respects_constraints_and_improves():
    space = slot_space(KS, ES, DS, RS)
    params = EvolutionParams(population=30, generations=15, mutation_prob=0.2)
    smallest = _cost(space.smallest())
    limits = [smallest * 1.5, 40.0, 80.0, 160.0]
    results = sweep(space, _accuracy, _cost, limits, params)
    assert [r.constraint for r in results] == limits
    for r in results:
        assert r.best.cost <= r.constraint
        assert _cost(r.best.arch) == pytest.approx(r.best.cost)
        assert r.history == sorted(r.history)  # best-so-far never drops
    # a looser constraint never finds a worse best than a tighter one by much (same predictor)
    accs = [r.best.accuracy for r in results]
    assert accs[-1] >= accs[0]
    cands = unique_candidates(results, key=lambda a: a)
    front = pareto_front(cands, lambda a: (_cost(a), _accuracy([a])[0]), senses=("min", "max"))
    for a in front:
        assert not any(dominates((_cost(b), _accuracy([b])[0]), (_cost(a), _accuracy([a])[0]), ("min", "max"))
                       for b in cands)


def test_tight_limit_seeds_from_smallest_and_impossible_limit_fails():
    space = slot_space(KS, ES, DS, RS)
    smallest = _cost(space.smallest())
    r = evolve(space, _accuracy, _cost, smallest * 1.05, EvolutionParams(population=10, generations=3, max_tries=20))
    assert r.best.cost <= smallest * 1.05
    with pytest.raises(ConstraintError, match="cheapest sub-network"):
        evolve(space, _accuracy, _cost, smallest * 0.5, EvolutionParams(population=10, generations=2, max_tries=20))
    skipped = []
    out = sweep(space, _accuracy, _cost, [smallest * 0.5, 100.0], EvolutionParams(population=10, generations=2),
                on_skip=lambda lim, msg: skipped.append(lim))
    assert skipped == [smallest * 0.5] and len(out) == 1


def _gpu_like_cost(a: SlotArch) -> float:
    """Additive like a per-layer LUT, but k3/e3 is NOT the cheapest block and the lowest resolution is not
    the cheapest one (as on the Jetson GPU table): kernel 5 and resolution 24 are cheapest."""
    spd = 4
    block = {3: 1.4, 5: 1.0, 7: 1.8}
    work = sum(block[k] + 0.1 * e for i, (k, e) in enumerate(zip(a.ks, a.e)) if i % spd < a.d[i // spd])
    return 3.0 + work * {16: 1.3, 20: 1.1, 24: 1.0, 28: 1.2, 32: 1.5}[a.r]


def test_additive_model_equals_the_walk_and_finds_the_true_cheapest():
    model = additive_slot_cost(_gpu_like_cost, KS, ES, DS, RS)
    assert model is not None
    rng = random.Random(3)
    space = slot_space(KS, ES, DS, RS)
    samples = [space.sample(rng) for _ in range(500)]
    assert all(model(a) == pytest.approx(_gpu_like_cost(a)) for a in samples)
    (cheap, lo), (dear, hi) = model.extreme(True), model.extreme(False)
    assert lo == pytest.approx(_gpu_like_cost(cheap)) and hi == pytest.approx(_gpu_like_cost(dear))
    assert cheap.r == 24 and set(cheap.ks[:2]) == {5} and cheap.d == (2,) * 5
    assert lo < _gpu_like_cost(space.smallest())  # the nominal smallest (k3 e3 d2 r16) is not the cheapest
    assert all(lo <= model(a) <= hi for a in samples)


def test_non_additive_cost_falls_back_to_searching_the_extremes():
    squared = lambda a: _cost(a) ** 1.5 + (7 if 7 in a.ks[:4] else 0)  # noqa: E731 - not a sum of slot costs
    assert additive_slot_cost(squared, KS, ES, DS, RS) is None
    model = slot_cost_model(squared, KS, ES, DS, RS)
    assert not model.additive and model.low < model.high
    rng = random.Random(4)
    space = slot_space(KS, ES, DS, RS)
    assert model.low <= min(squared(space.sample(rng)) for _ in range(300)) * 1.001
    (cheap, lo), _ = cost_extremes(space, squared, EvolutionParams(population=20, generations=30))
    assert squared(cheap) == lo


def test_seeding_from_the_true_cheapest_makes_tight_limits_feasible():
    model = slot_cost_model(_gpu_like_cost, KS, ES, DS, RS)
    nominal = slot_space(KS, ES, DS, RS)
    tight = model.low * 1.01
    assert tight < _gpu_like_cost(nominal.smallest())
    params = EvolutionParams(population=10, generations=3, max_tries=5)
    with pytest.raises(ConstraintError):
        evolve(nominal, _accuracy, _gpu_like_cost, tight, params)
    r = evolve(with_true_cheapest(nominal, model.cheapest), _accuracy, model.cost, tight, params)
    assert r.best.cost <= tight
    limits = model.default_limits(5)
    assert len(limits) == 5 and limits[0] == pytest.approx(model.low * 1.02) and limits[-1] == model.high
