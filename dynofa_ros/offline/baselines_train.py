"""Static Fashion-MNIST baselines trained under a fixed CPU budget: the yardsticks for the supernets.

A user who does not want a supernet trains one small static model.  This module trains such models
(a plain 3-conv CNN and torchvision's mobilenet_v3_small with a 1-channel stem, random init, nothing
downloaded) with the supernets' data pipeline and augmentation (``datasets.augment`` + ``preprocess`` at
28 px, label smoothing 0.1, AdamW), each until ``cpu_seconds`` of this process's CPU time
(``time.process_time``: all threads) are spent; the learning rate follows a cosine over the budget so
every model ends annealed.  It then measures top-1 on the 10k test set and batch-1, one-thread, eager
latency, interleaved between the models (and optionally a supernet's end points) in rounds, so a load
change on the machine hits every model alike.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import augment, preprocess
from ..engine.evaluate import evaluate_accuracy
from ..engine.timing import percentile, time_call
from ..supernet.base import count_macs
from .profiler import num_threads

RESOLUTION = 28


def plain_cnn(n_classes: int = 10) -> nn.Module:
    """Three 3x3 conv layers (32, 64, 128) with BN, ReLU and max-pooling, then a linear classifier."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(128, n_classes))


def mobilenet_v3_small_1ch(n_classes: int = 10) -> nn.Module:
    """torchvision's mobilenet_v3_small, random init, first conv 1 -> 16 channels, ``n_classes`` outputs."""
    import torchvision

    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=n_classes)
    model.features[0][0] = nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False)
    return model


BUILDERS: dict[str, Callable[[], nn.Module]] = {"plain_cnn": plain_cnn,
                                                "mobilenet_v3_small": mobilenet_v3_small_1ch}


@dataclass
class TrainConfig:
    cpu_seconds: float
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_steps: int | None = None  # tests only: an upper bound besides the CPU budget


def budget_lr(peak: float, spent: float, budget: float) -> float:
    """Warm-up over the first 3 % of the budget, then cosine to zero at the budget's end."""
    frac = min(1.0, spent / budget)
    if frac < 0.03:
        return peak * max(0.1, frac / 0.03)
    return peak * 0.5 * (1 + math.cos(math.pi * (frac - 0.03) / 0.97))


def train_budget(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 cfg: TrainConfig) -> dict[str, Any]:
    """Train until ``cfg.cpu_seconds`` of process CPU time are spent; returns what was spent."""
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start, step, seen = time.process_time(), 0, 0
    order, pos = torch.randperm(images.shape[0], generator=gen), 0
    while time.process_time() - start < cfg.cpu_seconds and (cfg.max_steps is None or step < cfg.max_steps):
        if pos + cfg.batch_size > images.shape[0]:
            order, pos = torch.randperm(images.shape[0], generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = budget_lr(cfg.lr, time.process_time() - start, cfg.cpu_seconds)
        x = preprocess(augment(images[idx], gen), RESOLUTION)
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step, seen = step + 1, seen + idx.numel()
    model.eval()
    return {"cpu_seconds": round(time.process_time() - start, 2), "cpu_budget": cfg.cpu_seconds,
            "steps": step, "epochs": round(seen / images.shape[0], 3), "batch_size": cfg.batch_size,
            "lr": cfg.lr, "seed": cfg.seed}


def save_weights(model: nn.Module, path: Path, name: str, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": name, "meta": meta, "state_dict": model.state_dict()}, path)


def load_weights(path: Path, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild ``name`` and load its saved weights (``weights_only=True``)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("model") != name:
        raise ValueError(f"{path}: holds {payload.get('model')!r}, expected {name!r}")
    model = BUILDERS[name]()
    model.load_state_dict(payload["state_dict"])
    return model.eval(), dict(payload["meta"])


def interleaved_latency(models: dict[str, tuple[nn.Module, int]], rounds: int = 10, runs: int = 20,
                        warmup: int = 3) -> dict[str, dict[str, float]]:
    """Batch-1, one-thread eager latency (ms) of each (module, resolution), models alternating per round.

    Two clocks: ``cpu`` (the calling thread's CPU time: the latency on an idle core, robust to other
    jobs on a shared machine) and ``wall``."""
    samples: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "wall": []} for n in models}
    with num_threads(1), torch.inference_mode():
        for _ in range(rounds):
            for name, (module, res) in models.items():
                x = torch.zeros(1, 1, res, res)
                for clock in ("cpu", "wall"):
                    samples[name][clock] += time_call(lambda: module(x), torch.device("cpu"), iters=runs,
                                                      warmup=warmup, clock=clock)
    return {n: {f"{clock}_{stat}_ms": round(fn(v[clock]), 4) for clock in ("cpu", "wall")
                for stat, fn in (("median", statistics.median), ("p95", lambda t: percentile(t, 95)))}
            | {"runs": len(v["cpu"])} for n, v in samples.items()}


def describe_model(module: nn.Module, res: int, test_x: torch.Tensor, test_y: torch.Tensor) -> dict[str, Any]:
    """Parameters, MACs and top-1 on the given test images."""
    return {"params": sum(p.numel() for p in module.parameters()),
            "macs": count_macs(module, torch.zeros(1, 1, res, res)), "resolution": res,
            "top1": evaluate_accuracy(module, test_x, test_y, res), "test_images": int(test_x.shape[0])}


def build_parser(parser=None):
    """Arguments of ``dynofa baselines`` / scripts/train_baselines.py."""
    import argparse

    p = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-seconds", type=float, required=True, help="process CPU seconds of training per model")
    p.add_argument("--models", default=",".join(BUILDERS), help=f"comma-separated subset of {sorted(BUILDERS)}")
    p.add_argument("--weights-dir", default="/tmp/dynofa_baselines", help="where the trained weights go")
    p.add_argument("--skip-train", action="store_true", help="load the weights from --weights-dir instead")
    p.add_argument("--supernet", action="append", default=[],
                   help="FAMILY=CHECKPOINT; its largest and smallest points join the same measurement")
    p.add_argument("--out", default="bench/results/baselines_fmnist", help="writes <out>.json and <out>.md")
    p.add_argument("--threads", type=int, default=1, help="training threads (the budget counts them all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=10, help="latency rounds (models alternate in each)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per model per round and clock")
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--train-images", type=int, help="first N training images only (tests)")
    p.add_argument("--max-steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", help="Fashion-MNIST directory")
    return p


def _trained(args, name: str, images: torch.Tensor, labels: torch.Tensor) -> tuple[nn.Module, dict[str, Any]]:
    path = Path(args.weights_dir) / f"{name}.pt"
    if args.skip_train:
        return load_weights(path, name)
    model = BUILDERS[name]()
    cfg = TrainConfig(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      max_steps=args.max_steps)
    meta = train_budget(model, images, labels, cfg)
    save_weights(model, path, name, meta)
    print(f"{name}: trained {meta['steps']} steps ({meta['epochs']} epochs) in {meta['cpu_seconds']} CPU-s "
          f"-> {path}", flush=True)
    return model, meta


def _supernet_points(spec: str, calib: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Largest and smallest sub-networks of a project checkpoint, BN recalibrated on ``calib``; keyed
    ``<checkpoint stem>:largest`` / ``:smallest``."""
    from ..engine.bn_stats import recalibrate_bn
    from ..engine.evaluate import batches
    from ..supernet.checkpoint import load_supernet

    family, _, path = spec.partition("=")
    supernet, meta = load_supernet(path, family)
    trained = {k: meta[k] for k in ("partial", "steps_done", "steps", "epochs", "cpu_seconds") if k in meta}
    points = {}
    for end, sub in (("largest", supernet.largest()), ("smallest", supernet.smallest())):
        module = supernet.extract(sub)
        recalibrate_bn(module, batches(calib, sub.resolution))
        points[f"{Path(path).stem}:{end}"] = {"module": module.eval(), "resolution": sub.resolution,
                                              "entry": {"kind": "supernet point", "id": sub.encode(),
                                                        "checkpoint": path, "checkpoint_meta": trained}}
    return points


def run(args) -> dict[str, Any]:
    """Train (or load) every baseline, add any supernet points, measure all, write json + md."""
    from ..datasets import load_fmnist
    from ..engine.evaluate import calibration_subset

    torch.set_num_threads(args.threads)
    images, labels = load_fmnist("train", args.data)
    images, labels = images[:args.train_images], labels[:args.train_images]
    test_x, test_y = load_fmnist("test", args.data)
    test_x, test_y = test_x[:args.test_images], test_y[:args.test_images]
    entries: dict[str, dict[str, Any]] = {}
    timed: dict[str, tuple[nn.Module, int]] = {}
    for name in [m for m in args.models.split(",") if m]:
        if name not in BUILDERS:
            raise SystemExit(f"unknown baseline {name!r}; known: {sorted(BUILDERS)}")
        model, meta = _trained(args, name, images, labels)
        entries[name] = {"kind": "static baseline", "train": meta}
        timed[name] = (model, RESOLUTION)
    for spec in args.supernet:
        for key, point in _supernet_points(spec, calibration_subset(images, 2000, 0)).items():
            entries[key] = point["entry"]
            timed[key] = (point["module"], point["resolution"])
    for key, (module, res) in timed.items():
        entries[key].update(describe_model(module, res, test_x, test_y))
    latency = interleaved_latency(timed, rounds=args.rounds, runs=args.runs)
    for key in entries:
        entries[key]["latency"] = latency[key]
    budgets = {e["train"]["cpu_budget"] for e in entries.values() if "train" in e}  # loaded weights' own
    budget = budgets.pop() if len(budgets) == 1 else args.cpu_seconds
    result = {"dataset": "fashion-mnist", "cpu_seconds_budget": budget,
              "latency_method": f"batch 1, 1 thread, eager, {args.rounds} interleaved rounds x {args.runs} runs, "
                                "median and p95; cpu = thread CPU time, wall = perf_counter",
              "machine_load_note": "shared 2-core machine; cpu-clock figures are robust to other jobs",
              "torch": torch.__version__, "models": entries}
    write_results(result, Path(args.out))
    return result


def write_results(result: dict[str, Any], out: Path) -> None:
    import json

    from ..operating_points import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    models = result["models"]
    ref = models.get("plain_cnn", next(iter(models.values())))["latency"]["cpu_median_ms"]
    n_test = next(iter(models.values()))["test_images"]
    lines = [f"# Fashion-MNIST static baselines ({result['cpu_seconds_budget']:g} CPU-s of training each)", "",
             result["latency_method"] + ".", "",
             f"| model | top-1 ({n_test} test images) | median ms (cpu) | p95 ms (cpu) | median ms (wall) "
             "| x plain_cnn latency | MACs | params | trained |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in models.items():
        lat = e["latency"]
        tr = e.get("train")
        if tr:
            trained = f"{tr['cpu_seconds']:.0f} CPU-s, {tr['epochs']} ep"
        else:
            cm = e["checkpoint_meta"]
            trained = f"supernet point {e['id']}" + (
                f" (partial: step {cm['steps_done']}/{cm['steps']})" if cm.get("partial") else "")
        lines.append(f"| {name} | {100 * e['top1']:.2f} % | {lat['cpu_median_ms']:.3f} | {lat['cpu_p95_ms']:.3f} "
                     f"| {lat['wall_median_ms']:.3f} | {lat['cpu_median_ms'] / ref:.2f} | {e['macs'] / 1e6:.2f} M "
                     f"| {e['params'] / 1e3:.0f} k | {trained} |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0
