"""Per-sub-network BatchNorm statistics (Dynamic-OFA): recalibrate once offline, restore at switch time.

Weight sharing leaves the supernet's running statistics meaningless for any single sub-network, so each
kept sub-network gets its own running mean/var from a calibration pass; they are stored next to the
operating points and copied back into the materialised module, with no calibration pass at run time.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

BN_FORMAT = "dynofa_ros.bn_stats"
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_layers(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in module.named_modules() if isinstance(m, _BN_TYPES)}


@torch.no_grad()
def recalibrate_bn(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset and re-estimate every BN layer's running stats as an exact average over ``batches``.

    Only BN buffers change (no gradients, dropout off). Returns the number of images seen.
    """
    layers = bn_layers(module)
    was_training = module.training
    saved = {name: m.momentum for name, m in layers.items()}
    module.eval()
    for m in layers.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the calibration batches
        m.train()
    seen = 0
    try:
        for x in batches:
            module(x)
            seen += x.shape[0]
    finally:
        for name, m in layers.items():
            m.momentum = saved[name]
        module.train(was_training)
    if layers and seen == 0:
        raise ValueError("recalibrate_bn: the calibration set is empty")
    return seen


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Running mean/var (and batch counters) of every BN layer, as detached CPU copies."""
    out: dict[str, torch.Tensor] = {}
    for name, m in bn_layers(module).items():
        out[f"{name}.running_mean"] = m.running_mean.detach().cpu().clone()
        out[f"{name}.running_var"] = m.running_var.detach().cpu().clone()
        out[f"{name}.num_batches_tracked"] = m.num_batches_tracked.detach().cpu().clone()
    return out


@torch.no_grad()
def load_bn_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy stored statistics into ``module``; every BN layer must be covered with matching shapes."""
    layers = bn_layers(module)
    expected = {f"{n}.{b}" for n in layers for b in ("running_mean", "running_var", "num_batches_tracked")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"BN statistics do not match the module: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for name, m in layers.items():
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            src, dst = state[f"{name}.{buf}"], getattr(m, buf)
            if src.shape != dst.shape:
                raise ValueError(f"BN statistics {name}.{buf}: shape {tuple(src.shape)} != {tuple(dst.shape)}")
            dst.copy_(src.to(dst.device))


def save_bn_stats(path: str | os.PathLike, subnet_id: str, state: dict[str, torch.Tensor],
                  calibration: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": BN_FORMAT, "subnet_id": subnet_id, "calibration": dict(calibration or {}),
                "state": state}, path)


def load_bn_stats(path: str | os.PathLike, subnet_id: str | None = None) -> dict[str, torch.Tensor]:
    """Read a BN-statistics file, checking it belongs to ``subnet_id`` when given."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable BN statistics file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != BN_FORMAT:
        raise ValueError(f"{path}: not a {BN_FORMAT} file")
    if subnet_id is not None and payload.get("subnet_id") != subnet_id:
        raise ValueError(f"{path}: BN statistics are for {payload.get('subnet_id')!r}, not {subnet_id!r}")
    return payload["state"]


def bn_stats_filename(subnet_id: str) -> str:
    """Stable file name for a sub-network's statistics (ids are already filesystem-safe)."""
    return f"{subnet_id}.pt"
