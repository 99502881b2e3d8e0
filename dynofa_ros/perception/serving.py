"""Keep-latest serving: an inference thread that takes the newest frame from a source when it is ready.

When frames arrive faster than the model runs, unserved frames are replaced (and counted as dropped), so
latency never builds up in a queue. A source is anything with `take(timeout)` and `close()`; in the
perception node it is the DDS reader itself (depth 1), which the thread takes from directly so that
receiving costs the executor nothing.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

Frame = TypeVar('Frame')


class FrameSource(Protocol):
    def take(self, timeout: float | None = None) -> object | None:
        """The newest frame, waiting up to `timeout`; None on timeout or once closed."""

    def close(self) -> None:
        """Wake a waiting `take` and make later ones return None."""


class InferenceWorker(Generic[Frame]):
    """A daemon thread that serves the latest frame with `handle`; exceptions are reported, not fatal."""

    def __init__(self, slot: FrameSource, handle: Callable[[Frame], None],
                 on_error: Callable[[Frame, Exception], None]) -> None:
        self._slot = slot
        self._handle = handle
        self._on_error = on_error
        self._running = True
        self._thread = threading.Thread(target=self._run, name='dynofa-inference', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._running = False
        self._slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while self._running:
            frame = self._slot.take(timeout=0.5)
            if frame is None:
                continue
            try:
                self._handle(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop serving
                self._on_error(frame, exc)
