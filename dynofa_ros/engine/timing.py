"""Latency measurement: CUDA with events and synchronisation, CPU with a monotonic clock."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; explicit ``cuda`` without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def time_call(fn: Callable[[], object], device: torch.device, iters: int = 50, warmup: int = 10,
              clock: str = "wall") -> list[float]:
    """Per-call latencies in ms; on CUDA each call is bracketed by events and synchronised.

    ``clock="cpu"`` (CPU only) counts the calling thread's CPU time, not wall time."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out = []
        for _ in range(iters):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end))
            else:
                t0 = now()
                fn()
                out.append((now() - t0) * 1e3)
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-interpolated percentile, ``q`` in [0, 100]."""
    s = sorted(values)
    if not s:
        raise ValueError("percentile of an empty list")
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": percentile(values, 95), "p99": percentile(values, 99),
            "min": min(values), "n": len(values)}
