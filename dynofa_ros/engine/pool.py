"""SubnetPool: switch between materialised sub-networks between two frames (the SwitchableModel).

Each kept sub-network is extracted once from the supernet into a standalone module, given its stored
per-sub-network BN statistics and (optionally) a graph variant.  The active sub-network is one immutable
slot object held in a single attribute: :meth:`infer` reads that reference once and runs to completion
on it, :meth:`switch` prepares the new slot first and then replaces the reference under a lock.  So an
inference in flight finishes on the module it started with, the next one uses the new module, and every
output comes wholly from one sub-network.  Switching to a materialised sub-network is one reference
assignment; a non-materialised one is extracted on demand (tens of ms) before the swap, never during
an inference.

A memory budget (bytes of weights and buffers) decides how many stay materialised: the rest are
extracted on demand and the least recently used non-active modules are dropped to stay in budget.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import psutil
import torch
import torch.nn.functional as F
from torch import nn

from ..supernet.base import SubnetSpec, Supernet
from .bn_stats import load_bn_state, load_bn_stats
from .graph_variants import make_variant
from .timing import resolve_device


def point_key(subnet_id: str, graph_variant: str = "eager") -> str:
    """Pool key of a (sub-network, graph variant) pair: the id itself for eager, ``id@variant`` else."""
    return subnet_id if graph_variant == "eager" else f"{subnet_id}@{graph_variant}"


def split_point_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`point_key`."""
    subnet_id, _, variant = key.partition("@")
    return subnet_id, variant or "eager"


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (distinct storages counted once)."""
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


@dataclass(frozen=True)
class _Slot:
    """An immutable (key, module) pair; swapping the pool's reference to it is the switch."""

    key: str
    module: nn.Module
    resolution: int


@dataclass
class PoolEntry:
    key: str
    spec: SubnetSpec
    graph_variant: str
    bn_state: dict[str, torch.Tensor] | None
    slot: _Slot | None = None
    weight_bytes: int = 0
    rss_delta_bytes: int | None = None
    materialise_ms: float | None = None
    stats: dict = field(default_factory=dict)


class SubnetPool:
    """The engine's :class:`SwitchableModel` over one supernet's kept sub-networks."""

    def __init__(self, supernet: Supernet, points: list[tuple[str, str, dict[str, torch.Tensor] | None]],
                 device: str | torch.device = "auto", memory_budget_mb: float | None = None,
                 initial: str | None = None, warmup: bool = True) -> None:
        """``points``: (point id, graph variant, BN state or None) in priority order.

        The point id is the pool key (an operating-point table's ``id``); it is the sub-network id,
        optionally with an ``@variant`` suffix to tell variants of one sub-network apart.
        """
        if not points:
            raise ValueError("SubnetPool needs at least one sub-network")
        self.device = resolve_device(device)
        self.supernet = supernet.eval()
        self.memory_budget = None if memory_budget_mb is None else int(memory_budget_mb * 2**20)
        self._warmup = warmup
        self._lock = threading.Lock()            # serialises switches and materialisation
        self._supernet_lock = threading.Lock()   # extraction temporarily re-activates the supernet
        self._entries: OrderedDict[str, PoolEntry] = OrderedDict()
        for key, variant, bn in points:
            spec = supernet.decode(split_point_key(key)[0])
            if key in self._entries:
                raise ValueError(f"duplicate sub-network {key!r} in the pool")
            self._entries[key] = PoolEntry(key, spec, variant, bn)
        self._lru: list[str] = []
        first = self._resolve(initial) if initial is not None else next(iter(self._entries))
        self._active = self._materialise(self._entries[first])
        for key, entry in self._entries.items():
            if entry.slot is None and self._fits(entry):
                self._materialise(entry)

    # --- SwitchableModel ----------------------------------------------------------------------
    def subnet_ids(self) -> list[str]:
        return list(self._entries)

    def active_subnet_id(self) -> str:
        return self._active.key

    def input_resolution(self, subnet_id: str | None = None) -> int:
        if subnet_id is None:
            return self._active.resolution
        return self._entries[self._resolve(subnet_id)].spec.resolution

    def switch(self, subnet_id: str) -> None:
        """Make ``subnet_id`` active for the next :meth:`infer`; in-flight inferences are unaffected."""
        key = self._resolve(subnet_id)
        with self._lock:
            entry = self._entries[key]
            slot = entry.slot if entry.slot is not None else self._materialise(entry)
            self._active = slot  # the switch: one reference assignment
            self._touch(key)
            self._evict_over_budget()

    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Logits (on the pool's device) and the id of the sub-network that produced all of them."""
        slot = self._active  # read once: the whole batch runs on this module
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if x.shape[-2:] != (slot.resolution, slot.resolution):
                # the caller pre-processed for the previous sub-network (a switch landed in between):
                # resize rather than fail, so no frame is lost
                x = F.interpolate(x, size=(slot.resolution, slot.resolution), mode="bilinear",
                                  align_corners=False, antialias=x.shape[-1] > slot.resolution)
            out = slot.module(x)
        return out, slot.key

    # --- pool management ----------------------------------------------------------------------
    def materialised_ids(self) -> list[str]:
        return [k for k, e in self._entries.items() if e.slot is not None]

    def entry(self, subnet_id: str) -> PoolEntry:
        return self._entries[self._resolve(subnet_id)]

    def module(self, subnet_id: str) -> nn.Module:
        """The materialised module of ``subnet_id`` (materialising it if needed)."""
        key = self._resolve(subnet_id)
        with self._lock:
            entry = self._entries[key]
            return (entry.slot or self._materialise(entry)).module

    def memory_report(self) -> dict[str, dict]:
        """Per sub-network: weights+buffers bytes (exact) and process RSS growth at materialisation
        (approximate: allocator reuse makes it noisy, reported as measured)."""
        return {k: {"materialised": e.slot is not None, "weight_bytes": e.weight_bytes,
                    "rss_delta_bytes": e.rss_delta_bytes, "materialise_ms": e.materialise_ms}
                for k, e in self._entries.items()}

    def _resolve(self, subnet_id: str) -> str:
        if subnet_id in self._entries:
            return subnet_id
        raise KeyError(f"unknown sub-network {subnet_id!r}; this pool has {list(self._entries)}")

    def _fits(self, entry: PoolEntry) -> bool:
        if self.memory_budget is None:
            return True
        used = sum(e.weight_bytes for e in self._entries.values() if e.slot is not None)
        need = module_bytes(self.supernet.extract(entry.spec)) if entry.weight_bytes == 0 else entry.weight_bytes
        entry.weight_bytes = need
        return used + need <= self.memory_budget

    def _materialise(self, entry: PoolEntry) -> _Slot:
        """Extract, restore BN statistics, build the graph variant, warm up; then publish the slot."""
        proc = psutil.Process(os.getpid())
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        with self._supernet_lock:
            module = self.supernet.extract(entry.spec)
        if entry.bn_state is not None:
            load_bn_state(module, entry.bn_state)
        module = make_variant(module.to(self.device), entry.graph_variant)
        if self._warmup:
            x = torch.zeros(1, self.supernet.in_channels, entry.spec.resolution, entry.spec.resolution,
                            device=self.device)
            with torch.inference_mode():
                module(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        entry.materialise_ms = (time.perf_counter() - t0) * 1e3
        entry.rss_delta_bytes = proc.memory_info().rss - rss0
        entry.weight_bytes = module_bytes(module)
        entry.slot = _Slot(entry.key, module, entry.spec.resolution)
        self._touch(entry.key)
        return entry.slot

    def _touch(self, key: str) -> None:
        if key in self._lru:
            self._lru.remove(key)
        self._lru.append(key)

    def _evict_over_budget(self) -> None:
        """Drop least recently used non-active modules until the materialised set fits the budget.

        An inference still running on a dropped module keeps its own reference, so it completes.
        """
        if self.memory_budget is None:
            return
        for key in list(self._lru):
            used = sum(e.weight_bytes for e in self._entries.values() if e.slot is not None)
            if used <= self.memory_budget:
                return
            if key != self._active.key:
                self._entries[key].slot = None
                self._lru.remove(key)

    # --- construction from an operating-point table -------------------------------------------
    @classmethod
    def from_table(cls, table_path: str | os.PathLike, device: str | torch.device = "auto",
                   memory_budget_mb: float | None = None, initial: str | None = None,
                   variants: tuple[str, ...] | None = None, warmup: bool = True,
                   checkpoint: str | os.PathLike | None = None) -> "SubnetPool":
        """Pool over a table's points (checkpoint and BN files resolved as the table schema says).

        ``checkpoint`` replaces the table's supernet checkpoint (e.g. the same supernet fine-tuned, or the
        user's official OFA ImageNet file for an ImageNet table); it must match the table's family and
        sub-network ids.

        ``variants`` restricts which graph variants are materialised (e.g. skip ``compiled`` on a
        machine without a compiler); points whose id carries ``@variant`` use the base id's spec.
        """
        from ..operating_points import load_table, resolve_bn_stats, resolve_checkpoint
        from ..supernet.checkpoint import load_table_supernet

        table = load_table(table_path)
        supernet, _ = load_table_supernet(checkpoint or resolve_checkpoint(table_path, table), table.supernet.family)
        points = []
        for p in table.points:
            if variants is not None and p.graph_variant not in variants:
                continue
            bn_path = resolve_bn_stats(table_path, p)
            bn = load_bn_stats(bn_path, split_point_key(p.id)[0]) if bn_path is not None else None
            points.append((p.id, p.graph_variant, bn))
        return cls(supernet, points, device=device, memory_budget_mb=memory_budget_mb, initial=initial,
                   warmup=warmup)
