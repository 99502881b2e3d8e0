"""Latency percentiles and rates over a sliding window, on the steady clock.

Replayed bags (use_sim_time) can make ROS time jump backwards when they loop, so everything here uses
`time.monotonic()`; stamps in results still come from the input header.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

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
        self._ticks: deque[tuple[float, int]] = deque()  # (time, events)
        self._total = 0
        self._lock = threading.Lock()

    def tick(self, now: float | None = None, events: int = 1) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._ticks.append((now, events))
            self._total += events
            self._trim(now)

    def rate_hz(self, now: float | None = None) -> float:
        """Events in the window divided by its length (under-reads during the first window)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return self._total / self.window_s

    def _trim(self, now: float) -> None:
        while self._ticks and now - self._ticks[0][0] > self.window_s:
            self._total -= self._ticks.popleft()[1]


class WindowedCounts:
    """Event counts per kind over the last `window_s` seconds, with the latest message of each kind.

    Diagnostics built on cumulative counters stay WARN forever after one bad frame; these forget. Events
    go into `buckets` fixed-width time buckets, so memory is bounded whatever the event rate.
    """

    def __init__(self, window_s: float, buckets: int = 20) -> None:
        self.window_s = window_s
        self._bucket_s = window_s / buckets
        self._buckets: deque[tuple[int, dict[str, int]]] = deque(maxlen=buckets + 1)
        self._latest: dict[str, tuple[float, str]] = {}  # kind -> (time, message)
        self._lock = threading.Lock()

    def add(self, kind: str, message: str = '', now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        index = int(now // self._bucket_s)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != index:
                self._buckets.append((index, {}))
            counts = self._buckets[-1][1]
            counts[kind] = counts.get(kind, 0) + 1
            self._latest[kind] = (now, message)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Events per kind in the window (kinds with none are absent)."""
        now = time.monotonic() if now is None else now
        oldest = int((now - self.window_s) // self._bucket_s) + 1
        total: dict[str, int] = {}
        with self._lock:
            for index, counts in self._buckets:
                if index >= oldest:
                    for kind, n in counts.items():
                        total[kind] = total.get(kind, 0) + n
        return total

    def latest(self, kind: str, now: float | None = None) -> str:
        """The last message of `kind` if it happened within the window, else ''."""
        now = time.monotonic() if now is None else now
        with self._lock:
            when, message = self._latest.get(kind, (-float('inf'), ''))
        return message if now - when <= self.window_s else ''


class RecentNames:
    """At most `cap` names, the least recently seen forgotten first (an LRU set).

    Names from topics (workloads, problem kinds) must not grow memory without bound; `overflowed` turns
    true the first time a name is forgotten, so the caller can warn once.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.overflowed = False
        self._names: OrderedDict[str, float] = OrderedDict()

    def get(self, name: str, default: float = -float('inf')) -> float:
        return self._names.get(name, default)

    def put(self, name: str, value: float = 0.0) -> bool:
        """Remember `name` with `value`; True when it was not known. May evict the oldest name."""
        known = name in self._names
        self._names[name] = value
        self._names.move_to_end(name)
        if len(self._names) > self.cap:
            self._names.popitem(last=False)
            self.overflowed = True
        return not known

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)
