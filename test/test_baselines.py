"""Static Fashion-MNIST baselines: the CPU budget bounds training, results have their schema, saved
weights reload (weights_only=True) to the same accuracy."""
import json
import time

import torch

from dynofa_ros.datasets import load_fmnist
from dynofa_ros.supernet.checkpoint import build_supernet, save_supernet
from dynofa_ros.supernet.configs import preset_config
from dynofa_ros.offline.baselines_train import (TrainConfig, build_parser, load_weights,
                                                mobilenet_v3_small_1ch, plain_cnn, run, train_budget)

torch.set_num_threads(1)


def test_cpu_budget_is_respected():
    images, labels = load_fmnist("train")
    images, labels = images[:1024], labels[:1024]
    t0 = time.process_time()
    meta = train_budget(plain_cnn(), images, labels, TrainConfig(cpu_seconds=1.5, batch_size=64))
    spent = time.process_time() - t0  # includes one-off set-up (optimizer imports), outside the budget
    assert meta["cpu_seconds"] >= 1.5 and meta["steps"] >= 2
    per_step = meta["cpu_seconds"] / meta["steps"]
    assert meta["cpu_seconds"] <= 1.5 + 2 * per_step + 0.2  # stops within a step of the budget
    assert meta["cpu_seconds"] <= spent


def test_mobilenet_adapted_to_one_channel():
    m = mobilenet_v3_small_1ch().eval()
    assert m.features[0][0].in_channels == 1 and m.features[0][0].out_channels == 16
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_results_schema_and_reload(tmp_path):
    common = ["--cpu-seconds", "0.5", "--train-images", "512", "--test-images", "200", "--rounds", "2",
              "--runs", "3", "--weights-dir", str(tmp_path / "w")]
    result = run(build_parser().parse_args(common + ["--out", str(tmp_path / "r")]))
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert list(saved["models"]) == ["plain_cnn", "mobilenet_v3_small"]
    for name, e in saved["models"].items():
        assert e["kind"] == "static baseline" and e["test_images"] == 200
        assert 0.0 <= e["top1"] <= 1.0 and e["macs"] > 0 and e["params"] > 0
        lat = e["latency"]
        assert lat["runs"] == 6 and 0 < lat["cpu_median_ms"] <= lat["cpu_p95_ms"]
        assert 0 < lat["wall_median_ms"] <= lat["wall_p95_ms"]
        assert e["train"]["cpu_seconds"] >= 0.5 and e["train"]["steps"] >= 1
        model, meta = load_weights(tmp_path / "w" / f"{name}.pt", name)
        assert meta == e["train"]
    md = (tmp_path / "r.md").read_text()
    assert "| plain_cnn |" in md and "| mobilenet_v3_small |" in md and "200 test images" in md
    torch.manual_seed(0)
    save_supernet(build_supernet("ofa_mbv3", preset_config("ofa_mbv3", "fmnist28")), tmp_path / "sn.pt",
                  {"partial": True, "steps_done": 1, "steps": 9})
    again = run(build_parser().parse_args(common + ["--skip-train", "--out", str(tmp_path / "r2"),
                                                    "--supernet", f"ofa_mbv3={tmp_path / 'sn.pt'}"]))
    for name in ("plain_cnn", "mobilenet_v3_small"):
        assert again["models"][name]["top1"] == result["models"][name]["top1"]
    for end in ("largest", "smallest"):
        point = again["models"][f"sn:{end}"]
        assert point["kind"] == "supernet point" and point["latency"]["runs"] == 6
        assert point["checkpoint_meta"] == {"partial": True, "steps_done": 1, "steps": 9}
    assert again["models"]["sn:largest"]["macs"] > again["models"]["sn:smallest"]["macs"]
    assert "(partial: step 1/9)" in (tmp_path / "r2.md").read_text()
