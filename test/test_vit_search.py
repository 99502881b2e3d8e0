"""`dynofa search` over the elastic ViT: exact additive costs, a valid search space, and the whole
pipeline (LUT, predictor, sweep, re-measure, table) on a tiny ViT supernet with real Fashion-MNIST."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import tiny_supernet_file

from dynofa_ros.cli import main
from dynofa_ros.engine.pool import SubnetPool
from dynofa_ros.offline.lut import ResolutionLUT
from dynofa_ros.offline.search import dominates
from dynofa_ros.offline.vit_adapter import ViTAdapter
from dynofa_ros.operating_points import load_table
from dynofa_ros.supernet.elastic_vit import ViTSpec

TINY = dict(n_classes=10, in_channels=1, patch=4, embed_list=(16, 32), depth_list=(1, 2), heads_list=(1, 2),
            mlp_ratio_list=(2, 3), head_dim=8, resolutions=(16, 20), stem_channels=4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, ViTAdapter]:
    path, sn = tiny_supernet_file(tmp_path_factory.mktemp("tiny_vit"), "elastic_vit", TINY)
    return path, ViTAdapter(sn)


def every_spec(ad: ViTAdapter) -> list[ViTSpec]:
    hm = list(itertools.product(ad.hs, ad.ms))
    return [ViTSpec(r, w, layers) for r in ad.rs for w in ad.ws for d in ad.ds
            for layers in itertools.product(hm, repeat=d)]


def test_macs_match_the_counted_module(tiny):
    _, ad = tiny
    rng = random.Random(0)
    for spec in [ad.supernet.largest(), ad.supernet.smallest()] + [ad.supernet.random_spec(rng) for _ in range(8)]:
        assert ad.mflops(spec) * 1e6 == pytest.approx(ad.supernet.flops(spec), abs=0.5), spec.encode()


def test_latency_is_additive_and_its_extremes_are_exact(tiny, tmp_path):
    """The LUT prices a network as fixed part + layers; the cost model's cheapest and dearest networks
    are the true ones over every sub-network of the space (brute force)."""
    _, ad = tiny
    lut = ad.build_lut(tmp_path / "lut", runs=5, warmup=1, show_progress=False)
    n_entries = len(ad.rs) * len(ad.ws) * (1 + len(ad.hs) * len(ad.ms))
    assert sum(len(t) for t in lut.tables.values()) == n_entries
    reloaded = ResolutionLUT.load_dir(tmp_path / "lut", 1)  # resumable: nothing is profiled again
    model = ad.cost_model("latency", reloaded)
    specs = every_spec(ad)
    costs = {s: model.cost(s) for s in specs}
    assert model.low == pytest.approx(min(costs.values())) and model.high == pytest.approx(max(costs.values()))
    assert costs[model.cheapest] == pytest.approx(model.low)
    flops = ad.cost_model("mflops", None)
    assert flops.low == pytest.approx(min(ad.mflops(s) for s in specs))
    with pytest.raises(ValueError, match="eager"):
        ad.build_lut(tmp_path / "lut8", form="int8")


def test_mutation_and_crossover_stay_in_the_space(tiny):
    _, ad = tiny
    space, rng = ad.space(), random.Random(1)
    population = [space.sample(rng) for _ in range(20)]
    for a, b in zip(population, population[1:]):
        for child in (space.mutate(a, 0.5, rng), space.crossover(a, b, rng)):
            ad.supernet.validate(child)
    assert len({len(x.layers) for x in (space.mutate(population[0], 1.0, rng) for _ in range(30))}) > 1
    assert len(ad.encode(ad.supernet.largest())) == len(ad.rs) + len(ad.ws) + max(ad.ds) * (len(ad.hs) + len(ad.ms))
    assert set(ad.corners()) >= {ad.supernet.largest(), ad.supernet.smallest()}


def test_search_writes_a_served_front_of_vit_points(tiny, tmp_path):
    ck, ad = tiny
    out, rep = tmp_path / "ops" / "tiny_vit.yaml", tmp_path / "report.json"
    args = ["search", "--checkpoint", str(ck), "--lut", str(tmp_path / "lut"), "--out", str(out), "--report", str(rep),
            "--predictor", str(tmp_path / "pred.pt"), "--predictor-samples", "4", "--predictor-eval", "200",
            "--calib", "200", "--eval-n", "300", "--population", "8", "--generations", "3", "--n-limits", "3"]
    assert main(args) == 0
    table = load_table(out, family="elastic_vit", num_classes=10, device="cpu@1t", validate_id=ad.supernet.decode)
    report = json.loads(rep.read_text())
    assert {c["id"] for c in report["candidates"] if c["kept"]} == set(table.ids())
    assert all(p.bn_stats is None for p in table.points) and not (out.parent / "bn").exists()
    assert len(report["sweep"]) == 3 and all(s["predicted_cost"] <= s["limit"] for s in report["sweep"])
    objs = [(p.latency_ms["cpu@1t"].median, p.accuracy) for p in table.points]
    assert not any(dominates(a, b, ("min", "max")) for a in objs for b in objs if a != b)
    pool = SubnetPool.from_table(out, device="cpu", warmup=False)  # the table serves as it is written
    try:
        for point in table.ids():
            pool.switch(point)
            logits, key = pool.infer(torch.zeros(1, 1, 20, 20))
            assert logits.shape == (1, 10) and key.startswith(point)
    finally:
        pool.close()


def test_int8_search_of_a_vit_is_one_clear_line(tiny, tmp_path):
    ck, _ = tiny
    with pytest.raises(SystemExit, match="eager form only"):
        main(["search", "--checkpoint", str(ck), "--lut", str(tmp_path / "lut"), "--out", str(tmp_path / "t.yaml"),
              "--form", "int8"])
