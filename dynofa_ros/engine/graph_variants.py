"""Graph-level variants of a materialised sub-network; each is a separate, measured operating point.

- ``eager``: the extracted module as is.
- ``fused``: BatchNorm folded into the preceding conv (torch.fx) and channels_last memory format.
- ``compiled``: ``torch.compile`` (inductor) with its on-disk cache, so the 30-40 s cold compile is paid
  once per sub-network and machine, never on the frame path (the pool warms it up before switching).
- ``int8``: not provided by this engine (static quantisation needs its own accuracy check; not done).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

VARIANTS = ("eager", "fused", "compiled")
DEFAULT_CACHE = Path(os.environ.get("DYNOFA_COMPILE_CACHE", Path.home() / ".cache" / "dynofa_ros" / "inductor"))


class ChannelsLast(nn.Module):
    """Runs ``inner`` on a channels_last copy of 4-D inputs (the fused variant's memory format)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


def fuse_bn(module: nn.Module) -> nn.Module:
    """Fold every conv->BN pair into the conv (eval only); modules without BN come back traced as is."""
    from torch.fx.experimental.optimization import fuse

    return fuse(module.eval(), inplace=False)


def enable_compile_cache(cache_dir: Path = DEFAULT_CACHE) -> None:
    """Point inductor's FX-graph/kernel caches at a persistent folder (unless the user already did)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")


def make_variant(module: nn.Module, variant: str) -> nn.Module:
    """Return ``module`` in graph variant ``variant`` (eval mode; may share weights with ``module``)."""
    module = module.eval()
    if variant == "eager":
        return module
    if variant == "fused":
        fused = fuse_bn(module).to(memory_format=torch.channels_last)
        return ChannelsLast(fused).eval()
    if variant == "compiled":
        enable_compile_cache()
        return torch.compile(module, dynamic=False)
    if variant == "int8":
        raise NotImplementedError("graph variant 'int8' is not implemented by this engine")
    raise ValueError(f"graph_variant: unknown variant {variant!r}; known: {list(VARIANTS)}")
