"""SubnetPool: switch between a supernet's kept operating points between two frames (the SwitchableModel).

Every kept sub-network has a *shared form* that is always resident: a module whose weights are views of
the supernet's own storage (:mod:`.shared`) plus that point's BN statistics, so a switch never needs a
reload and K points cost little more than the supernet.  Graph variants that change weights (``fused``,
``frozen``, ``int8``) or compile (``compiled``) are *private forms*: built from the shared form into their
own copy, and those copies are what the memory knob trades.

The active form is one immutable slot held in a single attribute: :meth:`infer` reads that reference once
and runs to completion on it, :meth:`switch` replaces the reference under a short lock.  A private form
is never built in that lock nor on the caller's thread: :meth:`switch` to a form that is not ready makes
the point's shared form serve at once and queues the build on the pool's background thread, which swaps
the finished form in if it is still the one wanted.  So an inference in flight finishes on the module it
started with, and every output comes wholly from one form, which :meth:`infer` names.

Which private forms stay resident is set by :meth:`set_materialised` (the manager's decision) or, when
nobody sets it, by ``memory_budget_mb``: private forms are built at start-up in priority order while they
fit, and the least recently used non-active ones are dropped when over budget.  Without a budget none is
built before a switch or a decision asks for it.  Shared forms are never dropped.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..operating_points import split_point_key
from ..supernet.base import SubnetSpec, Supernet
from .bn_stats import load_bn_stats
from .graph_variants import FX_TRACE_LOCK, FrozenGraph, extent_bytes, make_variant, module_bytes, weight_bytes
from .shared import SharedWeights, private_bytes
from .timing import resolve_device

_log = logging.getLogger(__name__)

# resolution -> a few calibration batches at that resolution (static int8 quantisation needs them)
CalibrationSource = Callable[[int], list[torch.Tensor]]
CALIBRATION_BATCH = 256  # the offline step's batch size: histogram observers depend on the split


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
    weight_bytes: int = 0            # private bytes: BN statistics for a shared form, the copy for a variant
    materialise_ms: float | None = None
    error: str | None = None         # why the last build of this private form failed
    stats: dict = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        return self.graph_variant == "eager"


class SubnetPool:
    """The engine's :class:`SwitchableModel` over one supernet's kept operating points."""

    def __init__(self, supernet: Supernet, points: list[tuple[str, str, dict[str, torch.Tensor] | None]],
                 device: str | torch.device = "auto", memory_budget_mb: float | None = None,
                 initial: str | None = None, warmup: bool = True,
                 calibration: CalibrationSource | None = None) -> None:
        """``points``: (point id, graph variant, BN state or None) in priority order.

        The point id is the pool key (an operating-point table's ``id``): the sub-network id, with an
        ``@variant`` suffix for a graph variant.  ``calibration`` feeds ``int8`` builds.
        """
        if not points:
            raise ValueError("SubnetPool needs at least one sub-network")
        self.device = resolve_device(device)
        self.supernet = supernet.eval().to(self.device)  # shared forms are views of it, on this device
        self.memory_budget = None if memory_budget_mb is None else int(memory_budget_mb * 2**20)
        self._warmup, self._calibration = warmup, calibration
        self._lock = threading.Lock()  # guards the slot references and the bookkeeping, never a build
        self._entries: dict[str, PoolEntry] = {}
        for key, variant, bn in points:
            if key in self._entries:
                raise ValueError(f"duplicate sub-network {key!r} in the pool")
            self._entries[key] = PoolEntry(key, supernet.decode(split_point_key(key)[0]), variant, bn)
        self.shared = SharedWeights(self.supernet)
        self._shared_slots = self._build_shared_slots()
        self._lru: list[str] = []
        self._wanted: set[str] | None = None  # private forms the manager wants resident (None: budget rule)
        self._pending: dict[str, None] = {}  # private forms queued for a build, oldest first
        self._building: str | None = None
        self._tasks: list[Future] = []
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subnet-pool")
        first = self._resolve(initial) if initial is not None else next(iter(self._entries))
        self._requested, self._active = first, self._entries[first].slot or self._shared_slot(first)
        if not self._entries[first].shared:
            self._build(self._entries[first])  # start-up (configure) may block; later switches never do
        self._queue_private(self._budget_order())

    # --- SwitchableModel ----------------------------------------------------------------------
    def subnet_ids(self) -> list[str]:
        return list(self._entries)

    def active_subnet_id(self) -> str:
        """The form serving now (a requested private form's shared form while it is being built)."""
        return self._active.key

    def requested_subnet_id(self) -> str:
        """The point last asked for by :meth:`switch`."""
        return self._requested

    def input_resolution(self, subnet_id: str | None = None) -> int:
        if subnet_id is None:
            return self._active.resolution
        return self._entries[self._resolve(subnet_id)].spec.resolution

    def switch(self, subnet_id: str) -> None:
        """Make ``subnet_id`` serve the next :meth:`infer` if resident, else its shared form until its
        private form is built in the background; never blocks on a build."""
        key = self._resolve(subnet_id)
        with self._lock:
            entry = self._entries[key]
            self._requested = key
            self._active = entry.slot or self._shared_slot(key)  # the switch: one reference assignment
            self._touch(key)
            missing = entry.slot is None
        if missing:
            self._queue_private([key])

    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Logits (on the pool's device) and the key of the form that produced all of them."""
        slot = self._active  # read once: the whole batch runs on this module
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if x.shape[-2:] != (slot.resolution, slot.resolution):
                # the caller pre-processed for the previous sub-network (a switch landed in between):
                # resize rather than fail, so no frame is lost
                x = F.interpolate(x, size=(slot.resolution, slot.resolution), mode="bilinear",
                                  align_corners=False, antialias=x.shape[-1] > slot.resolution)
            with FX_TRACE_LOCK:  # a background build's fx trace would break this call (graph_variants)
                out = slot.module(x)
        return out, slot.key

    # --- the memory knob ------------------------------------------------------------------------
    def set_materialised(self, keys: Iterable[str]) -> list[str]:
        """Keep exactly these private forms resident (shared forms always are); builds the missing ones
        in the background and drops the others (the active one last of all).  Returns unknown keys."""
        keys = list(keys)
        unknown = [k for k in keys if k not in self._entries]
        wanted = {k for k in keys if k in self._entries and not self._entries[k].shared}
        with self._lock:
            self._wanted = wanted
            for key, entry in self._entries.items():
                if not entry.shared and key not in wanted and entry.slot is not None \
                        and entry.slot is not self._active and key != self._requested:
                    self._drop(entry)
        self._queue_private([k for k in keys if k in wanted])
        return unknown

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until no build is queued or running (tests, benchmarks, start-up); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [f for f in self._tasks if not f.done()]
                if not pending:
                    self._tasks.clear()
            if not pending:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                pending[0].result(timeout=left)
            except Exception:  # noqa: BLE001 - the build logged and recorded its own error
                pass

    def close(self) -> None:
        """Stop the background builder (queued builds are cancelled)."""
        self._builder.shutdown(wait=False, cancel_futures=True)

    # --- pool management ----------------------------------------------------------------------
    def materialised_ids(self) -> list[str]:
        return [k for k, e in self._entries.items() if e.slot is not None or e.shared]

    def entry(self, subnet_id: str) -> PoolEntry:
        return self._entries[self._resolve(subnet_id)]

    def module(self, subnet_id: str) -> nn.Module:
        """The module of ``subnet_id``'s own form, built now if needed (tests and benchmarks only)."""
        entry = self._entries[self._resolve(subnet_id)]
        if entry.shared:
            return self._shared_slot(entry.key).module
        return (entry.slot or self._build(entry)).module

    def memory_report(self) -> dict[str, dict]:
        """Per point: resident or not, shared or private form, its private bytes, and its build time."""
        return {k: {"materialised": e.shared or e.slot is not None, "shared": e.shared,
                    "weight_bytes": e.weight_bytes, "materialise_ms": e.materialise_ms, "error": e.error}
                for k, e in self._entries.items()}

    def resident_bytes(self) -> int:
        """Supernet weights + derived shared tensors + every resident form's private bytes."""
        return (module_bytes(self.supernet) + self.shared.derived_bytes()
                + sum(e.weight_bytes for e in self._entries.values() if e.shared or e.slot is not None))

    def _resolve(self, subnet_id: str) -> str:
        if subnet_id in self._entries:
            return subnet_id
        raise KeyError(f"unknown sub-network {subnet_id!r}; this pool has {list(self._entries)}")

    def _build_shared_slots(self) -> dict[str, _Slot]:
        """One shared-weight module per distinct sub-network, with the BN statistics of its first point."""
        slots: dict[str, _Slot] = {}
        for entry in self._entries.values():
            subnet_id = split_point_key(entry.key)[0]
            if subnet_id not in slots:
                module = self.shared.module(entry.spec, entry.bn_state)
                slots[subnet_id] = _Slot(subnet_id, module, entry.spec.resolution)
                self._warm(module, entry.spec.resolution)
            if entry.shared:
                entry.slot, entry.materialise_ms = slots[subnet_id], 0.0
                entry.weight_bytes = private_bytes(slots[subnet_id].module, self.shared)
        return slots

    def _shared_slot(self, key: str) -> _Slot:
        return self._shared_slots[split_point_key(key)[0]]

    def _budget_order(self) -> list[str]:
        """Private forms to build at start-up: with a budget, in priority order while it lasts; without
        one, none (they are built when a switch or :meth:`set_materialised` asks for them)."""
        private = [k for k, e in self._entries.items() if not e.shared and e.slot is None]
        if self.memory_budget is None:
            return []
        used = sum(e.weight_bytes for e in self._entries.values() if not e.shared and e.slot is not None)
        room = self.memory_budget - used
        chosen = []
        for key in private:  # sizes are unknown before a build: estimate by the float copy of the slices
            estimate = extent_bytes(self._shared_slot(key).module)
            if estimate <= room:
                chosen.append(key)
                room -= estimate
        return chosen

    def _queue_private(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                entry = self._entries[key]
                if entry.shared or entry.slot is not None or key in self._pending or key == self._building:
                    continue
                self._pending[key] = None
                self._tasks.append(self._builder.submit(self._build_in_background))

    def _build_in_background(self) -> None:
        """Build one queued form: the requested one first (its switch waits on it), else the oldest."""
        with self._lock:
            if not self._pending:
                return
            key = self._requested if self._requested in self._pending else next(iter(self._pending))
            del self._pending[key]
            self._building = key
        entry = self._entries[key]
        try:
            if entry.slot is None:
                self._build(entry)
        except Exception as exc:  # noqa: BLE001 - the shared form keeps serving; the reason is reported
            entry.error = f"{type(exc).__name__}: {exc}"
            _log.warning("building %s failed (its shared form serves instead): %s", key, entry.error)
        finally:
            with self._lock:
                self._building = None

    def _build(self, entry: PoolEntry) -> _Slot:
        """Build a private form from the shared form (outside the lock), then publish it under the lock."""
        t0 = time.perf_counter()
        resolution = entry.spec.resolution
        # compiled wraps the shared form; the others fold or trace, so they start from a private copy
        base = (self.shared.module if entry.graph_variant == "compiled" else self.shared.private_copy)(
            entry.spec, entry.bn_state)
        calibration = self._calibration(resolution) if entry.graph_variant == "int8" and self._calibration else None
        module = make_variant(base, entry.graph_variant, example=self._example(resolution), calibration=calibration)
        self._warm(module, resolution)
        slot = _Slot(entry.key, module, resolution)
        with self._lock:
            entry.slot, entry.error = slot, None
            entry.materialise_ms = (time.perf_counter() - t0) * 1e3
            entry.weight_bytes = weight_bytes(module) if isinstance(module, FrozenGraph) else \
                private_bytes(module, self.shared)  # a frozen graph's weights are constants, not parameters
            if self._requested == entry.key:
                self._active = slot
            self._touch(entry.key)
            self._evict_over_budget()
        return slot

    def _example(self, resolution: int) -> torch.Tensor:
        return torch.zeros(1, self.supernet.in_channels, resolution, resolution, device=self.device)

    def _warm(self, module: nn.Module, resolution: int) -> None:
        if not self._warmup:
            return
        with torch.inference_mode():
            module(self._example(resolution))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _touch(self, key: str) -> None:
        if key in self._lru:
            self._lru.remove(key)
        self._lru.append(key)

    def _drop(self, entry: PoolEntry) -> None:
        """Forget a private form (an inference still running on it keeps its own reference)."""
        entry.slot = None
        if entry.key in self._lru:
            self._lru.remove(entry.key)

    def _evict_over_budget(self) -> None:
        """Under the lock: drop least recently used private forms that are neither active nor requested,
        and none the manager wants, until the private forms fit the budget."""
        if self.memory_budget is None or self._wanted is not None:
            return
        for key in list(self._lru):
            used = sum(e.weight_bytes for e in self._entries.values() if not e.shared and e.slot is not None)
            if used <= self.memory_budget:
                return
            entry = self._entries[key]
            if not entry.shared and entry.slot is not None and entry.slot is not self._active \
                    and key != self._requested:
                self._drop(entry)

    # --- construction from an operating-point table -------------------------------------------
    @classmethod
    def from_table(cls, table_path: str | os.PathLike, device: str | torch.device = "auto",
                   memory_budget_mb: float | None = None, initial: str | None = None,
                   variants: tuple[str, ...] | None = None, warmup: bool = True,
                   checkpoint: str | os.PathLike | None = None) -> "SubnetPool":
        """Pool over a table's points (checkpoint, BN and calibration files resolved as the schema says).

        ``checkpoint`` replaces the table's supernet checkpoint (e.g. the same supernet fine-tuned, or the
        user's official OFA ImageNet file for an ImageNet table); it must match the table's family and
        sub-network ids.  ``variants`` restricts which graph variants are kept (e.g. skip ``compiled`` on
        a machine without a compiler).
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
                   warmup=warmup, calibration=table_calibration(table_path, table))


def table_calibration(table_path: str | os.PathLike, table) -> CalibrationSource | None:
    """Calibration batches from the table's ``calibration_images`` file (uint8 [N, C, H, W]), normalised
    as the table says and resized per resolution; None when the table names no such file."""
    from ..operating_points import resolve_calibration_images

    path = resolve_calibration_images(table_path, table)
    if path is None:
        return None
    images = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[1] != table.supernet.in_channels:
        raise ValueError(f"{path}: expected a uint8 tensor [N, {table.supernet.in_channels}, H, W]")
    norm = table.supernet.normalization
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)

    def batches(resolution: int) -> list[torch.Tensor]:
        x = (images.float() / 255.0 - mean) / std
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < x.shape[-1])
        return list(x.split(CALIBRATION_BATCH))

    return batches
