"""Ctrl-C and SIGTERM during fit: finish the batch, save, stop cleanly; a second Ctrl-C aborts at once.

A cluster preempting a job sends SIGTERM and waits a grace period before SIGKILL; a user presses Ctrl-C.
Either way the work since the last checkpoint should not be lost: `GracefulInterrupt` records the
signal, and the fit loop, after the batch it is running, writes a resumable checkpoint and returns
with `trainer.interrupted = True`.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("ember")

_SIGNALS = ("SIGINT", "SIGTERM")


class GracefulInterrupt:
    """Catch SIGINT and SIGTERM while the `with` block runs (in the main thread only; elsewhere it does
    nothing, as Python delivers signals to the main thread).

    Example:
        >>> with GracefulInterrupt() as interrupt:
        ...     for batch in loader:
        ...         step(batch)
        ...         if interrupt.requested:
        ...             break
    """

    def __init__(self) -> None:
        self.requested: str | None = None  # the name of the signal received, once one was
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            for name in _SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.requested is not None:
            # the second signal: the user does not want to wait for the batch and the checkpoint
            self._restore()
            raise KeyboardInterrupt(f"{name} received twice: aborting at once")
        self.requested = name
        log.warning("%s received: finishing the current batch, then saving a checkpoint and stopping "
                    "(send it again to abort at once).", name)


__all__ = ["GracefulInterrupt"]
