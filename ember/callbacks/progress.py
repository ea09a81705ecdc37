"""ProgressBar: epoch, step, rate, ETA and the `prog_bar=True` metrics, a few times a second.

It reads the metrics only when it redraws, so it forces no device sync on the other steps. On a
terminal the line is cut to the terminal's width: metrics that do not fit are left out whole, so the line
never wraps (a wrapped line cannot be redrawn in place with `\r`).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import Any, TextIO

from ember.callbacks.base import Callback


class ProgressBar(Callback):
    """A one-line progress display on stderr.

    On a terminal the line redraws at most every `refresh_interval` seconds and fits the terminal's width;
    elsewhere (CI, a log file) a whole line is printed at most every `log_interval` seconds and at the end
    of each epoch. The epoch and step counts are always shown; then, as the width allows, elapsed time,
    ETA and rate, then the `prog_bar=True` metrics in the order they were logged. A metric that does not
    fit is dropped, with every metric after it.

    Args:
        refresh_interval: seconds between redraws on a terminal.
        log_interval: seconds between lines when the stream is not a terminal.
        stream: where to write (default: `sys.stderr` at each draw).
        width: the most characters a line may have; default: the terminal's width (the `COLUMNS`
            environment variable, else the size of the stream's terminal) minus one, and no limit when
            the stream is not a terminal.

    Example:
        >>> ember.Trainer(callbacks=[ProgressBar(refresh_interval=0.5, width=100)])
    """

    def __init__(self, refresh_interval: float = 0.25, log_interval: float = 30.0, stream: TextIO | None = None,
                 width: int | None = None):
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise ValueError(f"ProgressBar(width={width!r}): expected a positive number of characters, or None "
                             "to use the terminal's width.")
        self.refresh_interval = refresh_interval
        self.log_interval = log_interval
        self.width = width
        self._stream = stream
        self._drawn_length = 0
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
        line = f"Epoch {trainer.current_epoch}{epochs}  "
        if total != math.inf:
            eta = (total - done) / rate if rate > 0 else 0.0
            line += f"{done}/{int(total)}"
            timing = f"[{_clock(elapsed)}<{_clock(eta)}, {rate:.1f} it/s]"
        else:
            line += f"{done}"
            timing = f"[{_clock(elapsed)}, {rate:.1f} it/s]"
        metrics = [f"{k}={_number(v)}" for k, v in trainer.progress_bar_metrics.items()]
        interactive = self._interactive()
        limit = self._max_length(interactive)
        line = _fit([line, " " + timing] + [("  " if i == 0 else " ") + m for i, m in enumerate(metrics)], limit)
        if interactive:
            # spaces over what is left of a longer previous line; the cursor stays on this line
            padded = line.ljust(min(self._drawn_length, limit))
            self.stream.write("\r" + padded + ("\n" if final else ""))
            self._drawn_length = 0 if final else len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _max_length(self, interactive: bool) -> int | None:
        """The longest line allowed: `width`, else one less than the terminal's columns (a character in
        the last column makes some terminals wrap), else None (not a terminal: no limit)."""
        if self.width is not None:
            return self.width
        if not interactive:
            return None
        return max(_terminal_columns(self.stream) - 1, 1)


def _fit(items: list[str], max_length: int | None) -> str:
    """The first item whole (cut only when even it is too long), then each next item while it fits."""
    line = items[0]
    if max_length is None:
        return "".join(items)
    if len(line) >= max_length:
        return line[:max_length]
    for item in items[1:]:
        if len(line) + len(item) > max_length:
            break
        line += item
    return line


def _terminal_columns(stream: TextIO) -> int:
    """The columns of the stream's terminal, as `shutil.get_terminal_size` finds them for stdout:
    `COLUMNS` first, then the terminal itself, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns if columns > 0 else shutil.get_terminal_size().columns


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
