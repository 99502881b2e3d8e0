"""Latency percentiles and rates over a sliding window, on the steady clock.

Replayed bags (use_sim_time) can make ROS time jump backwards when they loop, so everything here uses
`time.monotonic()`; stamps in results still come from the input header.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class LatencyWindow:
    """The last `size` latencies in milliseconds, with percentiles."""

    def __init__(self, size: int = 100) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._values.append(value_ms)

    def percentile(self, q: float) -> float:
        """q-th percentile (0..100), NaN while empty."""
        with self._lock:
            if not self._values:
                return float('nan')
            return float(np.percentile(np.fromiter(self._values, dtype=np.float64), q))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class RateMeter:
    """Events per second over the last `window_s` seconds of the steady clock."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._stamps.append(now)
            self._trim(now)

    def rate_hz(self, now: float | None = None) -> float:
        """Events in the window divided by its length (under-reads during the first window)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._stamps) / self.window_s

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()
