"""Once-for-all training of the Fashion-MNIST supernets (sandwich rule + in-place distillation).

Each step trains the largest sub-network on the labels (label smoothing), then the smallest and
``--random`` random sub-networks on the largest one's soft predictions (BigNAS-style in-place
distillation), each at its own input resolution; gradients accumulate and one optimizer step follows.
The first ``--teacher-epochs`` train the largest sub-network alone (the first phase of progressive
shrinking: the teacher is worth distilling from before the small ones follow it).  ``--distill-from``
adds a separately trained network whose soft predictions the largest sub-network also learns (DeiT-style
distillation, e.g. the trained MBv3 teaching the ViT).  Learning rate: linear warm-up then cosine to zero
over the whole run.

Every random draw is seeded from (seed, step) or (seed, epoch), so a run resumed from its periodic
state file (``<out>.state.pt``, written every ``--save-every`` steps) follows the same trajectory as
an uninterrupted one.  After each epoch the largest and smallest sub-networks are evaluated on the 10k
test set (BN recalibrated on the fixed 2,000-image calibration subset) and a line is printed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..datasets import augment, load_fmnist, preprocess
from ..engine.bn_stats import recalibrate_bn
from ..engine.evaluate import batches, calibration_subset, evaluate_accuracy
from .base import Supernet
from .checkpoint import build_supernet, save_supernet
from .configs import PRESETS, preset_config

DEFAULTS = {
    "ofa_mbv3": {"lr": 3e-3, "weight_decay": 1e-4},
    "elastic_vit": {"lr": 2e-3, "weight_decay": 0.05},
}
_STEP_SEED = 1_000_003  # spreads (seed, step) pairs over distinct generator seeds


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(DEFAULTS), required=True)
    p.add_argument("--preset", default="fmnist28", choices=sorted(PRESETS["ofa_mbv3"]),
                   help="architecture space (dynofa_ros/supernet/configs.py); 'legacy' = the old shipped one")
    p.add_argument("--out", help="checkpoint path (default out/train/<preset>_<family>.pt)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the 60k images (fractions allowed)")
    p.add_argument("--teacher-epochs", type=float, default=0.0,
                   help="leading epochs that train only the largest sub-network")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, help="peak AdamW learning rate")
    p.add_argument("--random", type=int, default=2, help="random sub-networks per step besides max/min")
    p.add_argument("--distill-from", help="a finished checkpoint (any family) whose largest sub-network, BN "
                                          "recalibrated, also teaches the largest one (soft targets, DeiT-style)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the largest one's loss that is KD from --distill-from (the rest: labels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", help="Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable state files")
    p.add_argument("--eval-images", type=int, default=10000, help="test images for the per-epoch line")
    p.add_argument("--train-images", type=int, help="use only the first N training images (smoke tests)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also print the largest/smallest test accuracy every N steps (0: per epoch only)")
    p.add_argument("--max-steps", type=int, help="stop (resumably) after this many steps in this process")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing state file")
    p.add_argument("--init", help="start from this finished checkpoint's weights (a second schedule: a warm "
                                  "restart); its training cost is added to the recorded cost")
    return p


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 1/30 of the run, then cosine to zero."""
    warmup = max(1, total // 30)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * _STEP_SEED + epoch))


def sandwich_step(supernet: Supernet, xb: torch.Tensor, yb: torch.Tensor, rng: random.Random,
                  n_random: int, teacher_only: bool, teacher: "Teacher | None" = None) -> tuple[float, float]:
    """Accumulate the gradients of one step; returns (largest's CE loss, summed KD loss)."""
    largest = supernet.largest()
    supernet.set_active(largest)
    logits = supernet(preprocess(xb, largest.resolution))
    loss_max = F.cross_entropy(logits, yb, label_smoothing=0.1)
    loss = loss_max if teacher is None else teacher.blend(loss_max, logits, xb)
    loss.backward()
    if teacher_only:
        return float(loss_max.detach()), 0.0
    soft = F.softmax(logits.detach(), dim=1)
    kd_total = 0.0
    for spec in [supernet.smallest()] + [supernet.random_spec(rng) for _ in range(n_random)]:
        supernet.set_active(spec)
        student = supernet(preprocess(xb, spec.resolution))
        kd = F.kl_div(F.log_softmax(student, dim=1), soft, reduction="batchmean")
        kd.backward()
        kd_total += float(kd.detach())
    return float(loss_max.detach()), kd_total


class Teacher:
    """A fixed, separately trained network whose soft predictions the largest sub-network also learns."""

    def __init__(self, path: str, calib: torch.Tensor, weight: float) -> None:
        from .checkpoint import load_supernet
        if not 0.0 < weight <= 1.0:
            raise SystemExit(f"--distill-weight must be in (0, 1], got {weight}")
        supernet, _ = load_supernet(path)
        spec = supernet.largest()
        self.module = supernet.extract(spec)
        recalibrate_bn(self.module, batches(calib, spec.resolution))
        self.module.eval()
        self.resolution, self.weight = spec.resolution, weight

    def blend(self, label_loss: torch.Tensor, logits: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft = F.softmax(self.module(preprocess(xb, self.resolution)), dim=1)
        kd = F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
        return (1.0 - self.weight) * label_loss + self.weight * kd


def evaluate_ends(supernet: Supernet, calib: torch.Tensor, test_x: torch.Tensor,
                  test_y: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Test accuracy of the largest and smallest sub-networks, BN recalibrated on ``calib``."""
    was_training = supernet.training
    supernet.eval()
    result = {}
    for name, spec in (("largest", supernet.largest()), ("smallest", supernet.smallest())):
        module = supernet.extract(spec)
        recalibrate_bn(module, batches(calib, spec.resolution))
        result[name] = {"id": spec.encode(),
                        "test_accuracy": evaluate_accuracy(module, test_x, test_y, spec.resolution)}
    supernet.train(was_training)
    return result


def _save_state(path: Path, opt: torch.optim.Optimizer, step: int, cpu_s: float, wall_s: float,
                history: list[dict[str, Any]], args_seen: dict[str, Any], init: dict[str, Any] | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"optimizer": opt.state_dict(), "step": step, "cpu_seconds": cpu_s, "wall_seconds": wall_s,
                "history": history, "args": args_seen, "init": init}, tmp)
    os.replace(tmp, path)


def _run_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments a resumed run must share with the run that wrote the state file."""
    return {k: getattr(args, k) for k in ("family", "preset", "epochs", "teacher_epochs", "batch_size",
                                          "lr", "random", "seed", "train_images", "init", "distill_from",
                                          "distill_weight")}


def _setup(args: argparse.Namespace, out: Path) -> tuple[Supernet, torch.optim.Optimizer, dict[str, Any]]:
    """Fresh supernet and optimizer, or both restored from the state file (weights_only loads)."""
    from .checkpoint import load_supernet

    supernet = build_supernet(args.family, preset_config(args.family, args.preset))
    opt = torch.optim.AdamW(supernet.parameters(), lr=args.lr, weight_decay=DEFAULTS[args.family]["weight_decay"])
    state: dict[str, Any] = {"step": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0, "history": []}
    sp = state_path(out)
    if sp.exists() and out.exists() and not args.no_resume:
        saved = torch.load(sp, map_location="cpu", weights_only=True)
        older = {"distill_from": None, "distill_weight": 0.5}  # state files written before these options
        if {**older, **saved["args"]} != _run_args(args):
            raise SystemExit(f"{sp}: written by a run with other arguments {saved['args']}; "
                             f"pass the same ones or --no-resume")
        loaded, _ = load_supernet(out, args.family)
        supernet.load_state_dict(loaded.state_dict())
        opt.load_state_dict(saved["optimizer"])
        state = saved
        print(f"resumed from {sp} at step {state['step']}", flush=True)
    elif args.init:
        start, init_meta = load_supernet(args.init, args.family)
        supernet.load_state_dict(start.state_dict())
        # a chain of warm restarts: the starting point's own cost already includes the ones before it
        state["init"] = {"path": str(args.init), "epochs": init_meta.get("epochs"),
                         "cpu_seconds": init_meta.get("total_cpu_seconds", init_meta.get("cpu_seconds", 0.0))}
        print(f"starting from the weights of {args.init} ({init_meta.get('epochs')} epochs)", flush=True)
    supernet.train()
    return supernet, opt, state


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    args.lr = args.lr or DEFAULTS[args.family]["lr"]
    out = Path(args.out or f"out/train/{args.preset}_{args.family}.pt")
    images, labels = load_fmnist("train", args.data)
    images, labels = images[:args.train_images], labels[:args.train_images]
    test_x, test_y = load_fmnist("test", args.data)
    test_x, test_y = test_x[:args.eval_images], test_y[:args.eval_images]
    calib = calibration_subset(images, 2000, args.seed)
    torch.manual_seed(args.seed)  # initial weights
    supernet, opt, state = _setup(args, out)
    teacher = Teacher(args.distill_from, calib, args.distill_weight) if args.distill_from else None
    steps_per_epoch = images.shape[0] // args.batch_size
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    teacher_steps = int(round(args.teacher_epochs * steps_per_epoch))
    step, history = state["step"], state["history"]
    cpu0, wall0 = time.process_time() - state["cpu_seconds"], time.time() - state["wall_seconds"]
    stop = total if args.max_steps is None else min(total, step + args.max_steps)
    while step < stop:
        epoch, pos = divmod(step, steps_per_epoch)
        idx = epoch_order(images.shape[0], args.seed, epoch)[pos * args.batch_size:(pos + 1) * args.batch_size]
        gen = torch.Generator().manual_seed(args.seed * _STEP_SEED + step)
        torch.manual_seed(args.seed * _STEP_SEED + step)  # dropout masks
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, args.lr)
        loss_max, kd = sandwich_step(supernet, augment(images[idx], gen), labels[idx],
                                     random.Random(args.seed * _STEP_SEED + step), args.random,
                                     step < teacher_steps, teacher)
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.log_every == 0 or step == total:
            print(f"step {step}/{total} loss_max {loss_max:.3f} kd {kd:.3f} lr {lr_at(step - 1, total, args.lr):.2e} "
                  f"cpu {time.process_time() - cpu0:.0f}s wall {time.time() - wall0:.0f}s", flush=True)
        if step % steps_per_epoch == 0 or step == total or (args.eval_every and step % args.eval_every == 0):
            history.append(_epoch_line(supernet, calib, test_x, test_y, step / steps_per_epoch,
                                       time.process_time() - cpu0, time.time() - wall0))
        if (args.save_every and step % args.save_every == 0) or step == stop:
            save_supernet(supernet, out, {"partial": step < total, "steps_done": step, "steps": total})
            _save_state(state_path(out), opt, step, time.process_time() - cpu0, time.time() - wall0,
                        history, _run_args(args), state.get("init"))
    if step < total:
        print(f"stopped at step {step}/{total}; rerun the same command to resume", flush=True)
        return {"steps_done": step, "steps": total}
    return _finish(args, supernet, out, total, history, time.process_time() - cpu0, time.time() - wall0,
                   state.get("init"))


def _epoch_line(supernet: Supernet, calib: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                epoch: float, cpu_s: float, wall_s: float) -> dict[str, Any]:
    ends = evaluate_ends(supernet, calib, test_x, test_y)
    line = {"epoch": round(epoch, 3), "largest": ends["largest"]["test_accuracy"],
            "smallest": ends["smallest"]["test_accuracy"], "cpu_seconds": round(cpu_s, 1),
            "wall_seconds": round(wall_s, 1)}
    print(f"epoch {line['epoch']} largest {line['largest']:.4f} smallest {line['smallest']:.4f} "
          f"({test_x.shape[0]} test images) cpu {cpu_s:.0f}s wall {wall_s:.0f}s", flush=True)
    return line


def _finish(args: argparse.Namespace, supernet: Supernet, out: Path, total: int,
            history: list[dict[str, Any]], cpu_s: float, wall_s: float, init: dict[str, Any] | None) -> dict:
    supernet.eval()
    last = history[-1]
    meta = {"dataset": "fashion-mnist", "preset": args.preset, "epochs": args.epochs,
            "teacher_epochs": args.teacher_epochs, "steps": total, "batch_size": args.batch_size,
            "lr": args.lr, "seed": args.seed, "random_per_step": args.random, "cpu_seconds": round(cpu_s, 1),
            "train_seconds": round(wall_s, 1), "threads": args.threads,
            "method": "sandwich rule + in-place distillation, label smoothing 0.1, cosine LR"
                      + (f"; largest also distilled from {args.distill_from} (weight {args.distill_weight})"
                         if args.distill_from else ""),
            "largest": {"id": supernet.largest().encode(), "test_accuracy": last["largest"]},
            "smallest": {"id": supernet.smallest().encode(), "test_accuracy": last["smallest"]},
            "history": history}
    if init:  # a warm restart: the recorded cost covers both schedules
        meta["init"] = init
        meta["total_cpu_seconds"] = round(cpu_s + float(init["cpu_seconds"] or 0.0), 1)
    supernet.set_active(supernet.largest())
    save_supernet(supernet, out, meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "history"}, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return meta


def main(argv: list[str] | None = None) -> int:
    train(build_parser().parse_args(argv))
    return 0
