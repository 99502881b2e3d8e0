"""The offline stage end to end on a tiny supernet: LUT, resumable profiling, search, table, BN files, plot."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from dynofa_ros.cli import main
from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats
from dynofa_ros.offline.lut import ResolutionLUT, mbv3_layers
from dynofa_ros.offline.pipeline import MBv3Adapter, mbv3_macs
from dynofa_ros.offline.search import dominates
from dynofa_ros.operating_points import load_table, resolve_bn_stats
from conftest import tiny_supernet_file

TINY = dict(n_classes=10, width_mult=1.0, ks_list=(3, 5), expand_ratio_list=(3, 4), depth_list=(2, 3),
            in_channels=1, base_stage_width=(8, 8, 8, 8, 16, 16, 16, 32, 32), first_stride=1,
            resolutions=(16, 20), dropout_rate=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, object]:
    return tiny_supernet_file(tmp_path_factory.mktemp("tiny"), "ofa_mbv3", TINY)


def test_macs_match_supernet_count(tiny):
    _, sn = tiny
    ad = MBv3Adapter(sn)
    rng = random.Random(0)
    for _ in range(4):
        spec = sn.random_spec(rng)
        a = ad.from_spec(spec)
        assert ad.to_spec(a) == spec
        assert mbv3_macs(ad.layers(a), ad.first_kernel) == sn.flops(spec)
        sn.set_active(spec)
        ofa_walk = mbv3_layers(sn.net.get_active_net_config(), spec.resolution, sn.in_channels)
        assert [x.key() for x in ad.layers(a)] == [x.key() for x in ofa_walk]


def test_corners_set_one_choice_everywhere(tiny):
    """Every resolution x {shallowest, deepest} x {smallest, largest} kernel x {smallest, largest} expand."""
    _, sn = tiny
    ad = MBv3Adapter(sn)
    corners = ad.corners()
    assert len(corners) == len(set(corners)) == len(ad.rs) * 2 * 2 * 2
    assert ad.from_spec(sn.largest()) in corners and ad.from_spec(sn.smallest()) in corners
    for a in corners:
        assert len(set(a.ks)) == len(set(a.e)) == len(set(a.d)) == 1
        assert ad.from_spec(ad.to_spec(a)).d == a.d  # a real sub-network of the space


def test_profile_lut_and_resume(tiny, tmp_path, capsys):
    ck, sn = tiny
    lut_dir, store = tmp_path / "lut", tmp_path / "profile.json"
    args = ["profile", "--checkpoint", str(ck), "--lut", str(lut_dir), "--runs", "3", "--warmup", "1",
            "--out", str(store), "--random", "2", "--lut-check", "3"]
    assert main(args) == 0
    assert "median_rel_error" in capsys.readouterr().out
    lut = ResolutionLUT.load_dir(lut_dir, sn.in_channels)
    assert lut.resolutions() == [16, 20]
    ad = MBv3Adapter(sn)
    rng = random.Random(3)
    for _ in range(5):  # any sub-network is predictable from the profiled table
        a = ad.space().sample(rng)
        assert lut.tables[a.r].predict(ad.layers(a)) > 0
    records = json.loads(store.read_text())["records"]
    assert len(records) == 4 and all(k.endswith("|eager|cpu@1t") for k in records)
    for rec in records.values():
        assert 0 < rec["median_ms"] <= rec["p95_ms"] and rec["memory_mb"] > 0 and rec["peak_memory_mb"] >= rec["memory_mb"]
    # interrupted run: one record missing -> only that one is measured again, the others stay as they were
    dropped = sorted(records)[0]
    kept = {k: v for k, v in records.items() if k != dropped}
    store.write_text(json.dumps({"records": kept}))
    assert main(args[:-2]) == 0
    again = json.loads(store.read_text())["records"]
    assert set(again) == set(records) and all(again[k] == v for k, v in kept.items())


@pytest.mark.parametrize("form", ["eager", "int8"])
def test_search_table_bn_and_plot(tiny, tmp_path, form):
    """The kept points are exactly the judged form's front over (latency, accuracy), less the points
    another of it beats in eager, and never none; an int8 search prices and judges the quantised forms."""
    from dynofa_ros.datasets import FMNIST_DIR

    if not any(FMNIST_DIR.glob("t10k-images-idx3-ubyte*")):
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST_DIR}")
    ck, sn = tiny
    out, rep, pred = tmp_path / "ops" / "tiny_cpu.yaml", tmp_path / "report.json", tmp_path / "pred.pt"
    args = ["search", "--checkpoint", str(ck), "--lut", str(tmp_path / "lut"), "--out", str(out), "--report", str(rep),
            "--predictor", str(pred), "--predictor-samples", "4", "--predictor-eval", "200", "--calib", "200",
            "--eval-n", "300", "--population", "8", "--generations", "3", "--n-limits", "3", "--form", form]
    assert main(args) == 0
    table = load_table(out, family="ofa_mbv3", num_classes=10, device="cpu@1t", validate_id=sn.decode)
    report = json.loads(rep.read_text())
    assert {c["id"] for c in report["candidates"] if c["kept"]} == set(table.ids())
    for s in report["sweep"]:
        assert s["predicted_cost"] <= s["limit"]  # every searched point respects its constraint
    assert report["form"] == form

    def judged(c: dict) -> tuple[float, float]:
        return ((c["latency_ms"], c["accuracy"]) if form == "eager"
                else (c[f"{form}_latency_ms"], c[f"{form}_accuracy"]))

    def eager(c: dict) -> tuple[float, float]:
        return c["latency_ms"], c["accuracy"]

    def beaten(c: dict, among: list[dict], f) -> bool:
        return any(dominates(f(d), f(c), ("min", "max")) for d in among)

    # kept = exactly the judged form's front, less the points another point of that front beats in eager
    front = [c for c in report["candidates"] if not beaten(c, report["candidates"], judged)]
    kept_objs = [judged(c) for c in report["candidates"] if c["kept"]]
    assert kept_objs
    for c in report["candidates"]:
        in_front = c in front and not beaten(c, front, eager)
        if c["kept"]:
            assert in_front
        else:  # dropped: outside that set, or a duplicate of a kept point
            assert not in_front or judged(c) in kept_objs
    ad = MBv3Adapter(sn)
    if form == "int8":  # each winner's widest twin (largest kernel and expand, same depths) was measured too
        candidate_ids = {c["id"] for c in report["candidates"]}
        for s in report["sweep"]:
            assert ad.to_spec(ad.widest_twin(ad.from_spec(s["id"]))).encode() in candidate_ids
    # the predictor saw the space's corners and was refitted on the sweep's winners it had not seen
    sample_ids = [s["id"] for s in report["predictor_samples"]]
    assert {ad.to_spec(a).encode() for a in ad.corners()} <= set(sample_ids)
    fitted_first = len(ad.corners()) + 4  # the corners hold the largest and the smallest; 4 random
    assert len(sample_ids) == len(set(sample_ids)) > fitted_first
    for p in table.points:
        module = sn.extract(p.id)
        load_bn_state(module, load_bn_stats(resolve_bn_stats(out, p), p.id))
        assert 0.0 <= p.accuracy <= 1.0 and p.mflops == pytest.approx(sn.flops(p.id) / 1e6, abs=1e-3)
    assert pred.exists()
    assert main(args) == 0  # second run loads the saved predictor and LUT
    png = tmp_path / "front.png"
    assert main(["plot", str(out), "--out", str(png), "--report", str(rep)]) == 0
    assert png.stat().st_size > 1000


def test_cpu_clock_only_for_one_cpu_thread():
    from dynofa_ros.offline.profiler import measure_latency

    m, x = torch.nn.Conv2d(4, 4, 3), torch.randn(1, 4, 16, 16)
    t = measure_latency(m, x, warmup=1, runs=5, threads=1, clock="cpu")
    assert 0 < t.min_ms <= t.median_ms <= t.p95_ms
    with pytest.raises(ValueError, match="threads=1"):
        measure_latency(m, x, runs=2, threads=2, clock="cpu")
