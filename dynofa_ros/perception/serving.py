"""Keep-latest serving: an inference thread that takes the newest frame from a source when it is ready.

When frames arrive faster than the model runs, unserved frames are replaced (and counted as dropped), so
latency never builds up in a queue. A source is anything with `take(timeout)` and `close()`: the
one-frame `LatestFrameSlot` between a callback and the thread, or (in the perception node) the DDS reader
itself, which the thread takes from directly so that receiving costs the executor nothing.
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


class LatestFrameSlot(Generic[Frame]):
    """Holds at most one pending frame; `put` reports whether it replaced an unserved one."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, frame: Frame) -> bool:
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Frame | None:
        """Wait for a frame; None on timeout or after close()."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


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
