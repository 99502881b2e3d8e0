"""First operating-point tables for the shipped supernets, before any offline search.

A fixed ladder of sub-networks spanning each space (smallest to largest) is calibrated (per-sub-network
BN statistics on the fixed 2,000-image calibration subset), evaluated on the 10k test set and timed on
this CPU at batch 1, and written in the table schema of ``dynofa_ros.operating_points``.  The offline
search later replaces these with searched fronts.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..datasets import FMNIST_LABELS, FMNIST_MEAN, FMNIST_STD, load_fmnist
from ..supernet.base import Supernet
from ..supernet.checkpoint import load_supernet
from ..supernet.elastic_vit import ViTSpec
from ..supernet.ofa_mbv3 import MBv3Spec
from .bn_stats import bn_state, bn_stats_filename, recalibrate_bn, save_bn_stats
from .evaluate import batches, calibration_subset, evaluate_accuracy
from .pool import module_bytes
from .timing import summarize, time_call


def _mbv3(res: int, d: int, k: int, e: int) -> MBv3Spec:
    return MBv3Spec(res, tuple(tuple((k, e) for _ in range(d)) for _ in range(5)))


def _vit(res: int, w: int, d: int, h: int, m: int) -> ViTSpec:
    return ViTSpec(res, w, tuple((h, m) for _ in range(d)))


LADDERS = {
    "ofa_mbv3": [_mbv3(16, 2, 3, 3), _mbv3(20, 2, 3, 4), _mbv3(24, 3, 3, 4), _mbv3(24, 3, 5, 6),
                 _mbv3(28, 3, 5, 6), _mbv3(28, 4, 5, 6), _mbv3(32, 4, 7, 6)],
    "elastic_vit": [_vit(16, 48, 2, 2, 2), _vit(20, 48, 3, 2, 2), _vit(24, 64, 3, 3, 3), _vit(28, 64, 4, 3, 3),
                    _vit(28, 96, 5, 4, 3), _vit(32, 96, 6, 4, 4)],
}


def evaluate_point(supernet: Supernet, spec, calib: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor) -> tuple[dict, torch.nn.Module]:
    """Calibrate BN and measure accuracy/cost of one sub-network; returns (row without latency, module)."""
    module = supernet.extract(spec)
    recalibrate_bn(module, batches(calib, spec.resolution))
    acc = evaluate_accuracy(module, test_x, test_y, spec.resolution)
    params, macs = supernet.cost(spec)
    row = {"id": spec.encode(), "architecture": spec.describe(), "graph_variant": "eager",
           "resolution": spec.resolution, "accuracy": round(acc, 4), "mflops": round(macs / 1e6, 3),
           "params_m": round(params / 1e6, 4), "memory_mb": round(module_bytes(module) / 2**20, 3)}
    return row, module


def interleaved_latency(modules: list[torch.nn.Module], resolutions: list[int], in_channels: int,
                        rounds: int = 6, iters: int = 15) -> list[dict[str, float]]:
    """Batch-1 CPU latency of several modules, measured round-robin so that load from other processes
    on a shared machine spreads over all of them instead of skewing the ones measured during a spike."""
    samples: list[list[float]] = [[] for _ in modules]
    for _ in range(rounds):
        for i, (m, r) in enumerate(zip(modules, resolutions)):
            x = torch.zeros(1, in_channels, r, r)
            samples[i] += time_call(lambda: m(x), torch.device("cpu"), iters=iters, warmup=3)
    return [summarize(s) for s in samples]


def build_default_table(family: str, root: Path, threads: int = 1) -> Path:
    """Write ``config/operating_points/fmnist_<family>.yaml`` and ``models/bn/*.pt`` under ``root``."""
    from ..operating_points import save_table, table_from_dict

    torch.set_num_threads(threads)
    ckpt_rel = f"models/fmnist_{family}.pt"
    supernet, _ = load_supernet(root / ckpt_rel, family=family)
    train_x, _ = load_fmnist("train")
    test_x, test_y = load_fmnist("test")
    calib = calibration_subset(train_x, 2000, 0)
    table_path = root / "config" / "operating_points" / f"fmnist_{family}.yaml"
    bn_dir = root / "models" / "bn"
    points, modules = [], []
    for spec in LADDERS[family]:
        row, module = evaluate_point(supernet, spec, calib, test_x, test_y)
        state = bn_state(module)
        if state:
            bn_file = bn_dir / bn_stats_filename(row["id"])
            save_bn_stats(bn_file, row["id"], state, {"dataset": "fashion-mnist train", "images": 2000, "seed": 0})
            row["bn_stats"] = os.path.relpath(bn_file, table_path.parent)
        else:
            row["bn_stats"] = None
        points.append(row)
        modules.append(module)
    lats = interleaved_latency(modules, [p["resolution"] for p in points], supernet.in_channels)
    for row, lat in zip(points, lats):
        row["latency_ms"] = {"cpu": {"median": round(lat["median"], 3), "p95": round(lat["p95"], 3)}}
        print(f"{row['id']}: acc {row['accuracy']:.4f} cpu {row['latency_ms']['cpu']} mflops {row['mflops']}",
              flush=True)
    data = {"version": 1,
            "supernet": {"family": family, "checkpoint": ckpt_rel, "num_classes": 10,
                         "labels": list(FMNIST_LABELS),
                         "normalization": {"mean": [FMNIST_MEAN], "std": [FMNIST_STD]}, "in_channels": 1},
            "devices": ["cpu"], "points": points}
    save_table(table_from_dict(data, validate_id=supernet.decode), table_path)
    return table_path
