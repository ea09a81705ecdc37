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

    sanity_check_description = "Sanity Checking"
    train_description = "Training"
    validation_description = "Validation"
    test_description = "Testing"
    predict_description = "Predicting"

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
        self._enabled = True
        self._trainer: Any = None
        self._dataloader_idx = 0

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def _interactive(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    # --- Lightning's ProgressBar API (read by subclasses and by code that drives a bar) --------------

    @property
    def trainer(self) -> Any:
        if self._trainer is None:
            raise TypeError(f"{type(self).__name__}.trainer is set when a run starts; it is read before that.")
        return self._trainer

    @property
    def refresh_rate(self) -> float:
        """Seconds between redraws on a terminal."""
        return self.refresh_interval

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self._enabled

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        """Stop drawing (the tuner's trials and other nested runs do this)."""
        self._enabled = False

    @property
    def total_train_batches(self) -> float:
        """Training batches of an epoch (inf for a loader without a length)."""
        return self.trainer.num_training_batches

    @property
    def total_val_batches(self) -> float:
        """Validation batches of all validation loaders, in an epoch that validates (else 0)."""
        trainer = self.trainer
        if trainer.state.fn == "fit":
            every = trainer.check_val_every_n_epoch
            if not trainer.enable_validation or (every and (trainer.current_epoch + 1) % every != 0):
                return 0
        return sum(trainer.num_val_batches)

    @property
    def total_val_batches_current_dataloader(self) -> float:
        return _at(self.trainer.num_val_batches, self._dataloader_idx)

    @property
    def total_test_batches_current_dataloader(self) -> float:
        return _at(self.trainer.num_test_batches, self._dataloader_idx)

    @property
    def total_predict_batches_current_dataloader(self) -> float:
        return _at(self.trainer.num_predict_batches, self._dataloader_idx)

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, int | str | float]:
        """What the bar shows after the counts: the logger's version as `v_num`, then the `prog_bar=True`
        values. Override it to show other items."""
        items: dict[str, int | str | float] = {}
        version = getattr(trainer.loggers[0], "version", None) if trainer.loggers else None
        if version not in ("", None):
            items["v_num"] = version[-4:] if isinstance(version, str) else version
        items.update(trainer.progress_bar_metrics)
        return items

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print a line without breaking the bar."""
        stream = kwargs.pop("file", None) or self.stream
        if self._drawn and self._interactive():
            stream.write("\n")
        print(*args, sep=sep, file=stream, **kwargs)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def _track_dataloader(self, dataloader_idx: int | None) -> None:
        self._dataloader_idx = dataloader_idx or 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.monotonic()
        self._first_batch = trainer.fit_state.batches_done
        # a terminal shows the first batch at once; a log file gets a line per log_interval
        self._next_draw = 0.0 if self._interactive() else self._epoch_start + self.log_interval

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._track_dataloader(dataloader_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._track_dataloader(dataloader_idx)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._track_dataloader(dataloader_idx)

    def _due(self, now: float, batch_idx: int) -> bool:
        """Whether to redraw after batch `batch_idx` (a subclass may count batches instead of seconds)."""
        if now < self._next_draw:
            return False
        self._next_draw = now + (self.refresh_interval if self._interactive() else self.log_interval)
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        if not self._enabled or not self._due(now, batch_idx):
            return
        if not trainer.is_global_zero:
            return
        self._draw(trainer, batch_idx + 1, now)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self._enabled:
            self._draw(trainer, trainer.fit_state.batches_done, time.monotonic(), final=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state != "fit" or not trainer.is_global_zero or not self._enabled:
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
        metrics = [f"{k}={_number(v)}" for k, v in self.get_metrics(trainer, trainer.lightning_module).items()]
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
        self._drawn = True

    def _max_length(self, interactive: bool) -> int | None:
        """The longest line allowed: `width`, else one less than the terminal's columns (a character in
        the last column makes some terminals wrap), else None (not a terminal: no limit)."""
        if self.width is not None:
            return self.width
        if not interactive:
            return None
        return max(_terminal_columns(self.stream) - 1, 1)


class TQDMProgressBar(ProgressBar):
    """Lightning's default bar, by its arguments: redraw every `refresh_rate` batches (0 turns the bar off).

    ember draws its own one-line bar (not tqdm's), so a subclass that overrides the `init_*_tqdm` methods
    to customize tqdm bars is refused when it is made: its customization would not show.

    Args:
        refresh_rate: redraw after every this many training batches; 0 disables the bar.
        process_position: kept for Lightning's signature (ember draws one line).
        leave: keep the epoch's last line on the terminal (ember always does).

    Example:
        >>> ember.Trainer(callbacks=[TQDMProgressBar(refresh_rate=10)])
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 stream: TextIO | None = None) -> None:
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"TQDMProgressBar(refresh_rate={refresh_rate!r}): expected a number of batches >= 0 "
                             "(0 turns the bar off).")
        super().__init__(stream=stream)
        self._refresh_rate = refresh_rate
        self._process_position = process_position
        self._leave = leave
        if refresh_rate == 0:
            self.disable()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        custom = [name for name in TQDM_HOOKS if name in vars(cls)]
        if custom:
            from ember.lightning.not_supported import refuse

            refuse("TQDMProgressBar.init_*_tqdm", f"{cls.__name__}.{custom[0]} (a TQDMProgressBar customizing "
                                                  "its tqdm bars)")

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        return self._process_position

    def _due(self, now: float, batch_idx: int) -> bool:
        return (batch_idx + 1) % self._refresh_rate == 0 or batch_idx + 1 == self.total_train_batches


TQDM_HOOKS = ("init_sanity_tqdm", "init_train_tqdm", "init_predict_tqdm", "init_validation_tqdm", "init_test_tqdm")


def _at(counts: list[float], index: int) -> float:
    return counts[index] if index < len(counts) else 0


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
