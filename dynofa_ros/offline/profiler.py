"""Latency and memory measurement of sub-networks, graph variants and single layers on this device.

Rules that make the figures comparable across machines: a fixed intra-op thread count (recorded in the
device key, e.g. `cpu@2t`), warm-up runs before timing, median and p95 over many runs, CUDA timed with
events after synchronisation (never bare wall clock). Long sweeps are resumable: each result is written
atomically to a JSON store as soon as it exists and skipped when the command is re-run.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from dynofa_ros.engine.timing import percentile, time_call
from dynofa_ros.operating_points import atomic_write_text


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    runs: int


def device_key(device: str, threads: int | None = None, qualifier: str | None = None) -> str:
    """Table device key: `cpu@2t`, `cuda`, `cuda@15W` (qualifier = power mode / frequency label)."""
    base = "cuda" if device.startswith("cuda") else device
    parts = [base]
    if threads is not None and base == "cpu":
        parts.append(f"{threads}t")
    if qualifier:
        parts.append(qualifier)
    return "@".join(parts)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Temporarily fix torch's intra-op thread count (None: leave it)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def measure_latency(fn: Callable[[torch.Tensor], Any], example: torch.Tensor, *, warmup: int = 10,
                    runs: int = 50, threads: int | None = None, clock: str = "wall") -> Timing:
    """Latency of fn(example) in ms. The device is that of `example`; on CUDA each run is bracketed by
    CUDA events and synchronised. clock="cpu" (CPU, one thread only) times the calling thread's CPU
    time instead of wall time: on a machine shared with other jobs it is what the latency would be on
    an idle core, since time spent preempted is not counted."""
    cuda = example.is_cuda
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and (cuda or threads != 1):
        raise ValueError("clock='cpu' measures one CPU thread: use it with threads=1 on the CPU only")
    with num_threads(threads):
        times = time_call(lambda: fn(example), example.device, iters=runs, warmup=warmup, clock=clock)
    return Timing(median_ms=statistics.median(times), p95_ms=percentile(times, 95),
                  mean_ms=statistics.fmean(times), std_ms=statistics.pstdev(times), min_ms=min(times), runs=runs)


def module_memory_mb(module: nn.Module) -> float:
    """Resident memory of a materialised module: its parameters and buffers."""
    n = sum(t.numel() * t.element_size() for t in module.parameters())
    n += sum(t.numel() * t.element_size() for t in module.buffers())
    return n / 2**20


@torch.inference_mode()
def peak_memory_mb(module: nn.Module, example: torch.Tensor) -> float:
    """Peak memory of one inference including the module. CUDA: allocator peak (exact). CPU: the module
    plus the largest input+output pair of any leaf layer (an estimate; torch's CPU allocator has no
    peak counter and process RSS is too coarse for small networks)."""
    if example.is_cuda:
        torch.cuda.synchronize(example.device)
        torch.cuda.reset_peak_memory_stats(example.device)
        before = torch.cuda.memory_allocated(example.device)
        module(example)
        torch.cuda.synchronize(example.device)
        extra = torch.cuda.max_memory_allocated(example.device) - before
        return module_memory_mb(module) + extra / 2**20
    peak = 0

    def hook(_m, inp, out) -> None:
        nonlocal peak
        size = sum(t.numel() * t.element_size() for t in (*inp, out) if isinstance(t, torch.Tensor))
        peak = max(peak, size)

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        module(example)
    finally:
        for h in handles:
            h.remove()
    return module_memory_mb(module) + peak / 2**20


class ResultStore:
    """JSON file of measurement records keyed by a string; each `put` rewrites the file atomically so
    an interrupted sweep resumes where it stopped."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("records"), dict):
                raise ValueError(f"{self.path}: not a dynofa profile store (no 'records' mapping)")
            self.records = data["records"]

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any]:
        return self.records[key]

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.records[key] = record
        atomic_write_text(self.path, json.dumps({"records": self.records}, indent=1, sort_keys=True))


def record_key(subnet_id: str, variant: str, dev_key: str) -> str:
    return f"{subnet_id}|{variant}|{dev_key}"


def profile_module(module: nn.Module, example: torch.Tensor, *, threads: int | None, warmup: int,
                   runs: int) -> dict[str, Any]:
    """One record: latency and memory of a ready-to-run module on `example`'s device."""
    t = measure_latency(module, example, warmup=warmup, runs=runs, threads=threads)
    return {**asdict(t), "memory_mb": module_memory_mb(module), "peak_memory_mb": peak_memory_mb(module, example)}


def profile_many(items: Sequence[tuple[str, str, Callable[[], tuple[nn.Module, torch.Tensor]]]], store: ResultStore,
                 *, devices: Sequence[str], threads: Sequence[int | None], warmup: int = 10, runs: int = 50,
                 qualifier: str | None = None, show_progress: bool = True) -> None:
    """Measure every (subnet id, graph variant, build) item on every device and thread count, skipping
    records already in `store`. `build()` returns (module on CPU, example input on CPU)."""
    from tqdm import tqdm

    jobs = [(sid, var, build, dev, th) for sid, var, build in items for dev in devices
            for th in (threads if dev == "cpu" else [None])]
    todo = [j for j in jobs if record_key(j[0], j[1], device_key(j[3], j[4], qualifier)) not in store]
    for sid, var, build, dev, th in tqdm(todo, desc="profile", unit="net", disable=not show_progress):
        module, example = build()
        module, example = module.to(dev).eval(), example.to(dev)
        rec = profile_module(module, example, threads=th, warmup=warmup, runs=runs)
        store.put(record_key(sid, var, device_key(dev, th, qualifier)),
                  {**rec, "subnet_id": sid, "graph_variant": var, "device": dev, "threads": th})
