"""ProgressBar: epoch, step, rate, ETA and the `prog_bar=True` metrics, a few times a second.

It reads the metrics only when it redraws, so it forces no device sync on the other steps.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ember.callbacks.base import Callback


class ProgressBar(Callback):
    """A one-line progress display on stderr.

    On a terminal the line redraws at most every `refresh_interval` seconds; elsewhere (CI, a log file)
    a line is printed at most every `log_interval` seconds and at the end of each epoch.

    Example:
        >>> ember.Trainer(callbacks=[ProgressBar(refresh_interval=0.5)])
    """

    def __init__(self, refresh_interval: float = 0.25, log_interval: float = 30.0, stream: TextIO | None = None):
        self.refresh_interval = refresh_interval
        self.log_interval = log_interval
        self._stream = stream
        self._next_draw = 0.0
        self._epoch_start = 0.0
        self._first_batch = 0
        self._drawn = False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def _interactive(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.monotonic()
        self._first_batch = trainer.fit_state.batches_done
        # a terminal shows the first batch at once; a log file gets a line per log_interval
        self._next_draw = 0.0 if self._interactive() else self._epoch_start + self.log_interval

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + (self.refresh_interval if self._interactive() else self.log_interval)
        if not trainer.is_global_zero:
            return
        self._draw(trainer, batch_idx + 1, now)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._draw(trainer, trainer.fit_state.batches_done, time.monotonic(), final=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state != "fit" or not trainer.is_global_zero:
            return
        if not self._interactive():
            return
        self._draw(trainer, trainer.fit_state.batches_done, time.monotonic())

    def _draw(self, trainer, done: int, now: float, final: bool = False) -> None:
        total = trainer.num_training_batches
        elapsed = max(now - self._epoch_start, 1e-9)
        rate = (done - self._first_batch) / elapsed
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs != -1 else ""
        parts = [f"Epoch {trainer.current_epoch}{epochs}"]
        if total != math.inf:
            eta = (total - done) / rate if rate > 0 else 0.0
            parts.append(f"{done}/{int(total)} [{_clock(elapsed)}<{_clock(eta)}, {rate:.1f} it/s]")
        else:
            parts.append(f"{done} [{_clock(elapsed)}, {rate:.1f} it/s]")
        metrics = trainer.progress_bar_metrics
        if metrics:
            parts.append(" ".join(f"{k}={_number(v)}" for k, v in metrics.items()))
        line = "  ".join(parts)
        if self._interactive():
            self.stream.write("\r" + line.ljust(100) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
