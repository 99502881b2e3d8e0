"""Once-for-all training of the shipped Fashion-MNIST supernets (sandwich rule + in-place distillation).

Each step trains the largest sub-network on the labels, then the smallest and ``--random`` random
sub-networks on the largest one's soft predictions (BigNAS-style in-place distillation), each at its own
input resolution; gradients accumulate and one optimizer step follows.  Seeds fix data order,
augmentation and sampling, so one command reproduces the shipped checkpoint (up to CPU float
non-determinism).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..datasets import augment, load_fmnist, preprocess
from ..engine.bn_stats import recalibrate_bn
from ..engine.evaluate import batches, calibration_subset, evaluate_accuracy
from .checkpoint import build_supernet, save_supernet

DEFAULTS = {
    "ofa_mbv3": {"out": "models/fmnist_ofa_mbv3.pt", "lr": 3e-3, "weight_decay": 1e-4},
    "elastic_vit": {"out": "models/fmnist_elastic_vit.pt", "lr": 2e-3, "weight_decay": 0.05},
}


def default_config(family: str) -> dict:
    if family == "ofa_mbv3":
        from .ofa_mbv3 import fmnist_mbv3_config
        return fmnist_mbv3_config()
    from .elastic_vit import fmnist_vit_config
    return fmnist_vit_config()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(DEFAULTS), required=True)
    p.add_argument("--out", help="checkpoint path (default models/fmnist_<family>.pt)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the 60k images (fractions allowed)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, help="peak AdamW learning rate")
    p.add_argument("--random", type=int, default=1, help="random sub-networks per step besides max/min")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", help="Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=50, help="steps between intermediate checkpoints")
    return p


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    family = args.family
    out = Path(args.out or DEFAULTS[family]["out"])
    lr = args.lr or DEFAULTS[family]["lr"]
    images, labels = load_fmnist("train", args.data)
    test_x, test_y = load_fmnist("test", args.data)
    supernet = build_supernet(family, default_config(family))
    opt = torch.optim.AdamW(supernet.parameters(), lr=lr, weight_decay=DEFAULTS[family]["weight_decay"])
    steps_per_epoch = images.shape[0] // args.batch_size
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    warmup = max(1, total // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    largest, smallest = supernet.largest(), supernet.smallest()
    supernet.train()
    t0 = time.time()
    order = torch.randperm(images.shape[0], generator=gen)
    pos = 0
    for step in range(total):
        if pos + args.batch_size > images.shape[0]:
            order, pos = torch.randperm(images.shape[0], generator=gen), 0
        idx = order[pos:pos + args.batch_size]
        pos += args.batch_size
        xb, yb = augment(images[idx], gen), labels[idx]
        supernet.set_active(largest)
        logits = supernet(preprocess(xb, largest.resolution))
        loss_max = F.cross_entropy(logits, yb, label_smoothing=0.1)
        loss_max.backward()
        soft = F.softmax(logits.detach(), dim=1)
        kd_total = 0.0
        for spec in [smallest] + [supernet.random_spec(rng) for _ in range(args.random)]:
            supernet.set_active(spec)
            student = supernet(preprocess(xb, spec.resolution))
            kd = F.kl_div(F.log_softmax(student, dim=1), soft, reduction="batchmean")
            kd.backward()
            kd_total += float(kd.detach())
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < total:
            save_supernet(supernet, out, {"partial": True, "steps_done": step + 1, "steps": total, "seed": args.seed})
        if step % args.log_every == 0 or step == total - 1:
            el = time.time() - t0
            print(f"step {step + 1}/{total} loss_max {float(loss_max):.3f} kd {kd_total:.3f} "
                  f"lr {sched.get_last_lr()[0]:.2e} elapsed {el:.0f}s eta {el / (step + 1) * (total - step - 1):.0f}s",
                  flush=True)
    train_s = time.time() - t0
    supernet.eval()
    calib = calibration_subset(images, 2000, args.seed)
    summary = {}
    for name, spec in (("largest", largest), ("smallest", smallest)):
        module = supernet.extract(spec)
        recalibrate_bn(module, batches(calib, spec.resolution))
        summary[name] = {"id": spec.encode(),
                         "test_accuracy": evaluate_accuracy(module, test_x, test_y, spec.resolution)}
    meta = {"dataset": "fashion-mnist", "epochs": args.epochs, "steps": total, "batch_size": args.batch_size,
            "lr": lr, "seed": args.seed, "random_per_step": args.random, "train_seconds": round(train_s, 1),
            "threads": args.threads, "method": "sandwich rule + in-place distillation", **summary}
    supernet.set_active(largest)
    save_supernet(supernet, out, meta)
    print(json.dumps(meta, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return meta


def main(argv: list[str] | None = None) -> int:
    train(build_parser().parse_args(argv))
    return 0
