"""OFA's published predictor and note10 latency tables, loaded from the shared data folder."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dynofa_ros.offline.acc_predictor import OFAAccuracyPredictor, ofa_encode
from dynofa_ros.offline.lut import LatencyLUT, ResolutionLUT, mbv3_layers, ofa_w12_net_config


def _ofa_data() -> Path:
    env = os.environ.get("DYNOFA_OFA_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ofa"
    if not (path / "acc_predictor.pth").exists():
        pytest.skip(f"OFA shared data not found at {path} (set DYNOFA_OFA_DATA)")
    return path


def test_ofa_predictor_reference_values():
    pred = OFAAccuracyPredictor(_ofa_data() / "acc_predictor.pth")
    big, small = pred.predict([{"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": [224]},
                               {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": [160]}])
    assert big == pytest.approx(0.836, abs=5e-4)
    assert small == pytest.approx(0.753, abs=5e-4)


def test_ofa_encoding_layout():
    x = ofa_encode([3] * 20, [6] * 20, [2, 4, 2, 2, 3], 176)
    assert x.shape == (128,) and int(x.sum()) == 2 * 13 + 1
    assert x[0] == 1 and x[60 + 2] == 1 and x[120 + 4] == 1
    assert x[2 * 3: 4 * 3].sum() == 0  # slots 2, 3 skipped by stage 0 depth 2
    with pytest.raises(ValueError, match="kernel 4"):
        ofa_encode([4] * 20, [3] * 20, [2] * 5, 160)


def test_rejects_wrong_predictor_file(tmp_path):
    import torch

    torch.save({"0.weight": torch.zeros(3, 3)}, tmp_path / "p.pth")
    with pytest.raises(ValueError, match="not OFA's MBv3 accuracy predictor"):
        OFAAccuracyPredictor(tmp_path / "p.pth")


def test_note10_lut_matches_ofa_supernet_walk():
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    lut = ResolutionLUT.load_dir(_ofa_data() / "note10")
    assert lut.resolutions() == [160, 176, 192, 208, 224]
    key = "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0"
    assert key in lut.tables[224]
    net = OFAMobileNetV3(n_classes=1000, width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                         depth_list=[2, 3, 4])
    rng = random.Random(0)
    for r in (160, 224):
        cfg = {"ks": [rng.choice([3, 5, 7]) for _ in range(20)], "e": [rng.choice([3, 4, 6]) for _ in range(20)],
               "d": [rng.choice([2, 3, 4]) for _ in range(5)]}
        net.set_active_subnet(**cfg)
        from_net = lut.predict_config(net.get_active_net_config(), r)
        analytic = lut.predict_config(ofa_w12_net_config(cfg["ks"], cfg["e"], cfg["d"]), r)
        assert from_net == pytest.approx(analytic)
    big = lut.predict_config(ofa_w12_net_config([7] * 20, [6] * 20, [4] * 5), 224)
    small = lut.predict_config(ofa_w12_net_config([3] * 20, [3] * 20, [2] * 5), 160)
    assert 5 < small < big < 200
    layers = mbv3_layers(ofa_w12_net_config([7] * 20, [6] * 20, [4] * 5), 224)
    assert layers[0].key() == "Conv-input:224x224x3-output:112x112x24" and layers[-1].key().startswith("Logits")


def test_missing_entry_is_named(tmp_path):
    lut = LatencyLUT.load(_ofa_data() / "note10" / "160_lookup_table.yaml")
    with pytest.raises(KeyError, match="Conv-input:1x1x1"):
        lut.query("Conv-input:1x1x1")
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="not a latency lookup table"):
        LatencyLUT.load(tmp_path / "x.yaml")


def _json_lut(tmp_path: Path) -> Path:
    """note10 rewritten as Dynamic-OFA publishes its Jetson tables: <R>_lookup_table.json."""
    import json

    import yaml
    folder = tmp_path / "lut_json"
    folder.mkdir()
    for src in sorted((_ofa_data() / "note10").glob("*_lookup_table.yaml")):
        data = yaml.safe_load(src.read_text())
        (folder / src.name.replace(".yaml", ".json")).write_text(json.dumps(data))
    return folder


def test_json_lookup_tables_load_like_yaml(tmp_path):
    yaml_lut = ResolutionLUT.load_dir(_ofa_data() / "note10")
    json_lut = ResolutionLUT.load_dir(_json_lut(tmp_path))
    assert json_lut.resolutions() == yaml_lut.resolutions()
    cfg = ofa_w12_net_config([5] * 20, [4] * 20, [3] * 5)
    assert json_lut.predict_config(cfg, 192) == pytest.approx(yaml_lut.predict_config(cfg, 192))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "160_lookup_table.json").write_text("{not json")
    with pytest.raises(ValueError, match="unparsable"):
        ResolutionLUT.load_dir(tmp_path / "bad")


def _dynofa(*args: str) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "dynofa_ros.cli", "search", *args], capture_output=True, text=True,
                          timeout=300, cwd="/")


def test_ofa_mode_search_on_json_tables_reports_each_limit(tmp_path):
    import json
    report = tmp_path / "report.json"
    done = _dynofa("--ofa-predictor", str(_ofa_data() / "acc_predictor.pth"), "--ofa-lut", str(_json_lut(tmp_path)),
                   "--n-limits", "3", "--generations", "10", "--population", "20", "--report", str(report))
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    lo, hi = data["cost_range_ms"]
    assert len(data["limits"]) == 3 and data["limits"][0] == pytest.approx(lo * 1.02) and data["limits"][-1] == hi
    assert [s["limit"] for s in data["sweep"]] == data["limits"]
    for s in data["sweep"]:
        assert s["lut_latency_ms"] <= s["limit"] and 0.7 < s["predicted_accuracy"] < 0.9 and len(s["config"]["ks"]) == 20


def test_ofa_mode_refuses_what_it_cannot_do_in_one_line(tmp_path):
    base = ("--ofa-predictor", str(_ofa_data() / "acc_predictor.pth"), "--ofa-lut", str(_ofa_data() / "note10"))
    for extra, expected in ((("--limits", "1,2"), "no limit in 1 .. 2 is feasible"),
                            (("--metric", "mflops"), "--metric mflops is not available")):
        done = _dynofa(*base, *extra, "--generations", "2", "--population", "10")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and expected in done.stderr.strip().splitlines()[-1]
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
