"""Accuracy measurement and calibration batches on Fashion-MNIST-style uint8 tensors."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..datasets import preprocess


def batches(images: torch.Tensor, resolution: int, batch_size: int = 250,
            device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Pre-processed batches of ``images`` (uint8) at ``resolution``, in order."""
    for i in range(0, images.shape[0], batch_size):
        yield preprocess(images[i:i + batch_size], resolution).to(device)


@torch.no_grad()
def evaluate_accuracy(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, resolution: int,
                      batch_size: int = 250, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (fraction) of ``module`` in eval mode."""
    was_training = module.training
    module.eval()
    correct = 0
    try:
        for i, x in enumerate(batches(images, resolution, batch_size, device)):
            y = labels[i * batch_size:(i + 1) * batch_size].to(device)
            correct += int((module(x).argmax(1) == y).sum())
    finally:
        module.train(was_training)
    return correct / max(1, images.shape[0])


def calibration_subset(images: torch.Tensor, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """A fixed random subset of training images for BN recalibration (same for every sub-network)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images.shape[0], generator=g)[:n]
    return images[idx]
