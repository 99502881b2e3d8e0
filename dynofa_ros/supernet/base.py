"""Interface shared by every weight-shared supernet (OFA MobileNetV3, elastic ViT).

A sub-network is described by a family-specific, frozen :class:`SubnetSpec`; its id string is the
stable key used in operating-point tables, BN-statistics files and ROS messages, so encoding must be
canonical (one id per architecture) and decoding must reject anything outside the space by name.
"""
from __future__ import annotations

import abc
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


class SpecError(ValueError):
    """A sub-network spec or id is malformed or outside the supernet's architecture space."""


@dataclass(frozen=True)
class SubnetSpec:
    """Base class of sub-network specs; subclasses add their architecture fields."""

    resolution: int

    family: ClassVar[str] = ""

    def encode(self) -> str:
        """Compact, stable, human-readable id (e.g. ``mbv3-r32-k3e4.k5e6-...``)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Longer human-readable architecture text for tables and logs."""
        return self.encode()


def _check(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise SpecError(f"{field}: {msg}")


def check_choice(value: Any, choices: list | tuple, field: str) -> None:
    """Raise :class:`SpecError` naming ``field`` when ``value`` is not one of ``choices``."""
    _check(value in choices, field, f"{value!r} not in {sorted(choices)}")


def parse_int(text: str, field: str, spec_id: str) -> int:
    """Parse an integer token of an id, naming the field on failure."""
    try:
        return int(text)
    except ValueError:
        raise SpecError(f"{field}: malformed value {text!r} in id {spec_id!r}") from None


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (conv, linear and attention matmuls).

    Counted with hooks on a standalone module, so the figure is that of the deployed sub-network, not
    the supernet's max-size kernels. Follows the OFA convention of reporting MACs as "FLOPs".
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    def extra_hook(m: nn.Module, _inp, _out) -> None:
        nonlocal total
        total += int(getattr(m, "last_extra_macs", 0))

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif hasattr(m, "last_extra_macs"):
            handles.append(m.register_forward_hook(extra_hook))
    try:
        with torch.no_grad():
            module(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


class Supernet(nn.Module, abc.ABC):
    """A weight-shared supernet: architecture space, spec codec, activation and extraction."""

    family: ClassVar[str] = ""
    spec_type: ClassVar[type[SubnetSpec]] = SubnetSpec

    def __init__(self) -> None:
        super().__init__()
        self._cost_cache: dict[str, tuple[int, int]] = {}
        self._active: SubnetSpec | None = None

    # --- architecture space -------------------------------------------------------------------
    @abc.abstractmethod
    def space(self) -> dict[str, Any]:
        """Choices per dimension (JSON-serialisable), e.g. ``{"kernel": [3, 5, 7], ...}``."""

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (``self._config``, set by every subclass); stored in checkpoints
        to rebuild the same supernet."""
        return dict(self._config)

    @property
    def in_channels(self) -> int:
        """Input image channels expected by the stem."""
        return self._config["in_channels"]

    @abc.abstractmethod
    def validate(self, spec: SubnetSpec) -> None:
        """Raise :class:`SpecError` naming the first field outside the space."""

    @abc.abstractmethod
    def decode_unchecked(self, spec_id: str) -> SubnetSpec:
        """Parse an id into a spec without checking it against the space."""

    @abc.abstractmethod
    def largest(self) -> SubnetSpec: ...

    @abc.abstractmethod
    def smallest(self) -> SubnetSpec: ...

    @abc.abstractmethod
    def random_spec(self, rng: random.Random) -> SubnetSpec: ...

    @abc.abstractmethod
    def _apply_active(self, spec: SubnetSpec) -> None: ...

    @abc.abstractmethod
    def _extract(self, spec: SubnetSpec) -> nn.Module: ...

    # --- shared behaviour ---------------------------------------------------------------------
    def encode(self, spec: SubnetSpec) -> str:
        self.validate(spec)
        return spec.encode()

    def decode(self, spec_id: str) -> SubnetSpec:
        """Id -> spec, validated; errors name the malformed or out-of-space field."""
        if not isinstance(spec_id, str) or not spec_id:
            raise SpecError(f"id: expected a non-empty string, got {spec_id!r}")
        spec = self.decode_unchecked(spec_id)
        self.validate(spec)
        return spec

    def as_spec(self, spec_or_id: SubnetSpec | str) -> SubnetSpec:
        spec = self.decode(spec_or_id) if isinstance(spec_or_id, str) else spec_or_id
        if not isinstance(spec, self.spec_type):
            raise SpecError(f"family: {type(spec).__name__} is not a {self.spec_type.__name__}")
        self.validate(spec)
        return spec

    def set_active(self, spec: SubnetSpec | str) -> SubnetSpec:
        """Make ``spec`` the sub-network that :meth:`forward` runs (weight sharing, no copy)."""
        spec = self.as_spec(spec)
        self._apply_active(spec)
        self._active = spec
        return spec

    @property
    def active(self) -> SubnetSpec:
        if self._active is None:
            self.set_active(self.largest())
        assert self._active is not None
        return self._active

    def extract(self, spec: SubnetSpec | str) -> nn.Module:
        """Standalone module with copied weights (and current BN stats) for ``spec``; eval mode."""
        spec = self.as_spec(spec)
        with torch.no_grad():
            module = self._extract(spec)
        return module.eval()

    def sample_input(self, spec: SubnetSpec, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.in_channels, spec.resolution, spec.resolution)

    def cost(self, spec: SubnetSpec | str) -> tuple[int, int]:
        """(parameters, MACs) of the standalone sub-network; cached by id."""
        spec = self.as_spec(spec)
        key = spec.encode()
        if key not in self._cost_cache:
            module = self.extract(spec)
            params = sum(p.numel() for p in module.parameters())
            macs = count_macs(module, self.sample_input(spec))
            self._cost_cache[key] = (params, macs)
        return self._cost_cache[key]

    def params(self, spec: SubnetSpec | str) -> int:
        return self.cost(spec)[0]

    def flops(self, spec: SubnetSpec | str) -> int:
        """MACs, as OFA reports "FLOPs"."""
        return self.cost(spec)[1]
