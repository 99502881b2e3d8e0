"""Supernet checkpoints: the project's own format and the official OFA MobileNetV3 files.

Everything is loaded with ``weights_only=True`` from a path the user gives; nothing is ever downloaded.
Failures raise :class:`CheckpointError` saying which file and what is wrong (unreadable, wrong format,
wrong family, missing/unexpected keys, shape mismatches).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .base import Supernet

FORMAT = "dynofa_ros.supernet"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, of the wrong kind or does not match the supernet."""


def supernet_class(family: str) -> type[Supernet]:
    from .elastic_vit import ElasticViTSupernet
    from .ofa_mbv3 import OFAMobileNetV3Supernet

    classes = {c.family: c for c in (OFAMobileNetV3Supernet, ElasticViTSupernet)}
    if family not in classes:
        raise CheckpointError(f"unknown supernet family {family!r}; known: {sorted(classes)}")
    return classes[family]


def build_supernet(family: str, config: dict[str, Any]) -> Supernet:
    return supernet_class(family)(**config)


def _read(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a readable report of every mismatch (strict)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state))
              if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
    if problems:
        raise CheckpointError(f"{where}: does not match the supernet: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def save_supernet(supernet: Supernet, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
    """Write the project format atomically (temp file + rename) so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "family": supernet.family,
               "config": supernet.config(), "meta": dict(meta or {}),
               "state_dict": {k: v.detach().clone() for k, v in supernet.state_dict().items()}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_official_ofa(payload: Any) -> bool:
    """An official OFA file: ``{'state_dict': tensors}`` (or bare tensors) without the project's header."""
    if not isinstance(payload, dict) or "format" in payload:
        return False
    state = payload.get("state_dict", payload)
    return isinstance(state, dict) and "first_conv.conv.weight" in state


def load_table_supernet(path: str | os.PathLike, family: str) -> tuple[Supernet, dict[str, Any]]:
    """The supernet a table names: the project format, or for ``ofa_mbv3`` an official OFA MobileNetV3
    file (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``, the user's own download)."""
    payload = _read(path)
    if family == "ofa_mbv3" and is_official_ofa(payload):
        return _official_from_payload(payload, str(path)), {"format": "ofa_official"}
    return _project_from_payload(payload, str(path), family)


def load_supernet(path: str | os.PathLike, family: str | None = None) -> tuple[Supernet, dict[str, Any]]:
    """Rebuild the supernet stored at ``path``; returns (supernet in eval mode, meta)."""
    return _project_from_payload(_read(path), str(path), family)


def _project_from_payload(payload: Any, path: str, family: str | None) -> tuple[Supernet, dict[str, Any]]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (an official OFA file? use load_official_ofa_mbv3)" if isinstance(payload, dict) and "state_dict" in payload else ""
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint{hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {payload.get('version')!r}")
    for key in ("family", "config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    if family is not None and payload["family"] != family:
        raise CheckpointError(f"{path}: holds a {payload['family']!r} supernet, expected {family!r}")
    try:
        supernet = build_supernet(payload["family"], payload["config"])
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: invalid supernet config ({exc})") from exc
    _load_strict(supernet, payload["state_dict"], str(path))
    supernet.set_active(supernet.largest())
    return supernet.eval(), dict(payload.get("meta", {}))


def _remap_official_key(key: str, own: set[str]) -> str:
    """The key renames ofa's ``OFAMobileNetV3.load_state_dict`` accepts (older releases' names)."""
    new = key.replace(".mobile_inverted_conv.", ".conv.")
    if new in own:
        return new
    for old, repl in ((".bn.bn.", ".bn."), (".conv.conv.weight", ".conv.weight"), (".linear.linear.", ".linear."),
                      (".linear.", ".linear.linear."), ("bn.", "bn.bn."), ("conv.weight", "conv.conv.weight")):
        if old in new:
            return new.replace(old, repl)
    return new


def load_official_ofa_mbv3(path: str | os.PathLike, width_mult: float | None = None,
                           **kwargs: Any) -> Supernet:
    """Load an official ``ofa_mbv3_d234_e346_k357_w1.0``/``_w1.2`` file (``{'state_dict': ...}``).

    ``width_mult`` is inferred from the first conv's width when not given (16 -> 1.0, 24 -> 1.2).
    """
    return _official_from_payload(_read(path), str(path), width_mult, **kwargs)


def _official_from_payload(payload: Any, path: str, width_mult: float | None = None, **kwargs: Any) -> Supernet:
    from .ofa_mbv3 import OFAMobileNetV3Supernet

    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' of tensors (official OFA format)")
    probe = state.get("first_conv.conv.weight")
    if width_mult is None:
        if probe is None:
            raise CheckpointError(f"{path}: no 'first_conv.conv.weight'; not an OFA MobileNetV3 checkpoint")
        width_mult = {16: 1.0, 24: 1.2}.get(int(probe.shape[0]))
        if width_mult is None:
            raise CheckpointError(f"{path}: first conv has {probe.shape[0]} channels; pass width_mult")
    classifier = [v for k, v in state.items() if k.startswith("classifier.") and k.endswith("weight")]
    if classifier and "n_classes" not in kwargs:
        kwargs["n_classes"] = int(classifier[0].shape[0])
    supernet = OFAMobileNetV3Supernet(width_mult=width_mult, **kwargs)
    own = set(supernet.net.state_dict())
    remapped = {_remap_official_key(k, own): v for k, v in state.items()}
    _load_strict(supernet.net, remapped, str(path))
    supernet.set_active(supernet.largest())
    return supernet.eval()
