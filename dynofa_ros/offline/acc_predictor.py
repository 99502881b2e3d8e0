"""Accuracy predictors for search: OFA's published MobileNetV3 predictor and the project's own.

Measuring accuracy of a sub-network needs BN recalibration plus a pass over the evaluation set (seconds),
search needs tens of thousands of evaluations, so it ranks candidates with a small MLP over an
architecture encoding and re-measures only the survivors.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

OFA_KS = (3, 5, 7)
OFA_E = (3, 4, 6)
OFA_SLOTS = 20


def ofa_encode(ks: Sequence[int], e: Sequence[int], d: Sequence[int], r: int) -> torch.Tensor:
    """OFA's 128-input encoding of a w1.2 MBv3 sub-network (see data/ofa/README.md): one-hot kernel per
    slot (60), one-hot expand per slot (60), one-hot resolution bucket (r - 112) // 16 (8); slots skipped
    by the stage depth stay all-zero."""
    if len(ks) != OFA_SLOTS or len(e) != OFA_SLOTS or len(d) != 5:
        raise ValueError(f"need 20 ks, 20 e, 5 d; got {len(ks)}, {len(e)}, {len(d)}")
    x = torch.zeros(128)
    for i in range(OFA_SLOTS):
        if i % 4 >= d[i // 4]:
            continue
        if ks[i] not in OFA_KS or e[i] not in OFA_E:
            raise ValueError(f"slot {i}: kernel {ks[i]} / expand {e[i]} outside {OFA_KS} / {OFA_E}")
        x[i * 3 + OFA_KS.index(ks[i])] = 1.0
        x[60 + i * 3 + OFA_E.index(e[i])] = 1.0
    bucket = (r - 112) // 16
    if not 0 <= bucket < 8:
        raise ValueError(f"resolution {r} outside the predictor's range 112..239")
    x[120 + bucket] = 1.0
    return x


def _mlp(in_features: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, h), nn.ReLU()]
        in_features = h
    layers.append(nn.Linear(in_features, 1))
    return nn.Sequential(*layers)


class OFAAccuracyPredictor:
    """OFA's `acc_predictor.pth` (ImageNet top-1 fraction of w1.2 MBv3 sub-networks), from a user path."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        state = torch.load(Path(path), map_location=device, weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        self.net = _mlp(128, (400, 400, 400)).to(device)
        try:
            self.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not OFA's MBv3 accuracy predictor (Sequential 128-400-400-400-1): {exc}") from exc
        self.net.eval()
        self.device = device

    @torch.inference_mode()
    def predict(self, configs: Sequence[dict]) -> list[float]:
        """configs: OFA dicts {'ks': [20], 'e': [20], 'd': [5], 'r': [R] or R}."""
        x = torch.stack([ofa_encode(c["ks"], c["e"], c["d"], c["r"][0] if isinstance(c["r"], (list, tuple)) else c["r"])
                         for c in configs]).to(self.device)
        return self.net(x).squeeze(1).tolist()


class MLPAccuracyPredictor:
    """The project's own predictor: an MLP over any fixed-length architecture encoding (the search
    space's `encode`), fitted to accuracies measured on the supernet's evaluation set."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 64), seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.in_features = in_features
        self.hidden = tuple(hidden)
        self.net = _mlp(in_features, self.hidden)
        self.base = 0.0

    def fit(self, features: Sequence[Sequence[float]], accuracy: Sequence[float], *, epochs: int = 500,
            lr: float = 3e-3, weight_decay: float = 1e-4) -> float:
        """Full-batch Adam on MSE; the mean accuracy is a fixed offset so the MLP learns the residual.
        Returns the final training RMSE."""
        x = torch.tensor(features, dtype=torch.float32)
        y = torch.tensor(accuracy, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features or len(y) != len(x):
            raise ValueError(f"expected features of shape (N, {self.in_features}) and N accuracies, got "
                             f"{tuple(x.shape)} and {len(y)}")
        self.base = float(y.mean())
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self.net.train()
        for _ in range(epochs):
            opt.zero_grad()
            loss = ((self.net(x).squeeze(1) + self.base - y) ** 2).mean()
            loss.backward()
            opt.step()
        self.net.eval()
        return float(loss.detach().sqrt())

    @torch.inference_mode()
    def predict(self, features: Sequence[Sequence[float]]) -> list[float]:
        x = torch.tensor(features, dtype=torch.float32)
        return (self.net(x).squeeze(1) + self.base).clamp(0.0, 1.0).tolist()

    def save(self, path: str | os.PathLike) -> None:
        torch.save({"in_features": self.in_features, "hidden": list(self.hidden), "base": self.base,
                    "state_dict": self.net.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLPAccuracyPredictor":
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        p = cls(int(d["in_features"]), tuple(d["hidden"]))
        p.net.load_state_dict(d["state_dict"])
        p.base = float(d["base"])
        p.net.eval()
        return p
