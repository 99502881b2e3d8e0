"""Shipped defaults: re-measure three kept sub-networks through the pool against the recorded accuracy."""
from pathlib import Path

import pytest
import torch

from dynofa_ros.datasets import FMNIST_DIR, load_fmnist, preprocess
from dynofa_ros.engine.pool import SubnetPool

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "test" / "fixtures" / "legacy" / "fmnist_ofa_mbv3.yaml"

pytestmark = pytest.mark.skipif(not TABLE.exists() or not (FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()
                                and not (FMNIST_DIR / "t10k-labels-idx1-ubyte").exists(),
                                reason="shipped table or Fashion-MNIST test set absent")


def test_three_kept_subnets_match_recorded_accuracy():
    from dynofa_ros.operating_points import load_table

    table = load_table(TABLE)
    points = sorted((p for p in table.points if p.graph_variant == "eager"), key=lambda p: p.mflops)
    chosen = [points[0], points[len(points) // 2], points[-2]]
    pool = SubnetPool.from_table(TABLE, device="cpu", variants=("eager",))
    x_all, y_all = load_fmnist("test")
    x_all, y_all = x_all[:5000], y_all[:5000]
    for p in chosen:
        pool.switch(p.id)
        correct = 0
        for i in range(0, x_all.shape[0], 500):
            logits, key = pool.infer(preprocess(x_all[i:i + 500], pool.input_resolution()))
            assert key == p.id
            correct += int((logits.argmax(1) == y_all[i:i + 500]).sum())
        acc = correct / x_all.shape[0]
        assert abs(acc - p.accuracy) <= 0.01, f"{p.id}: measured {acc:.4f}, recorded {p.accuracy:.4f}"
