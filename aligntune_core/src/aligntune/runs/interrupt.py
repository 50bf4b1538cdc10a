"""SIGINT/SIGTERM during training: finish the current step, save a complete checkpoint, then stop.

A second signal acts as it would without aligntune (the previous handlers are back once the first one arrives).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

log = structlog.get_logger("aligntune.runs")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptRequests:
    """A context in which SIGINT/SIGTERM set `requested` instead of killing the process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptRequests:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name
        self._restore()
        log.warning("stop requested: saving a checkpoint at the end of this step, then stopping",
                    signal=self.requested, hint="send it again to stop at once, without a checkpoint")

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __exit__(self, *exc: object) -> None:
        self._restore()
