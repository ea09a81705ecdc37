"""RichProgressBar and RichModelSummary: the progress bar and the model summary drawn with `rich`.

rich is an extra (`pip install 'ember[rich]'`), imported when a run starts. Without it both fall back to
ember's plain bar and plain summary, and say so once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from ember._logging import log
from ember.callbacks.progress import ProgressBar
from ember.callbacks.summary import ModelSummary, summarize, summary_rows


def _rich_or_none(who: str) -> Any:
    try:
        import rich  # noqa: F401
    except ImportError:
        log.warning("%s draws with rich, which is not installed; showing ember's plain one instead. "
                    "pip install 'ember[rich]'", who)
        return None
    import rich.console
    import rich.progress
    import rich.table

    return rich


@dataclass
class RichProgressBarTheme:
    """The styles of the bar's parts (rich style strings)."""

    description: str = ""
    progress_bar: str = "#6206E0"
    progress_bar_finished: str = "#6206E0"
    progress_bar_pulse: str = "#6206E0"
    batch_progress: str = ""
    time: str = "dim"
    processing_speed: str = "dim underline"
    metrics: str = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(ProgressBar):
    """A bar per loop (training epoch, validation, test, predict) with the `prog_bar=True` values after it.

    Args:
        refresh_rate: redraw after every this many batches; 0 turns the bar off.
        leave: keep each finished epoch's bar on the screen.
        theme: the styles, a `RichProgressBarTheme`.
        console_kwargs: arguments of `rich.console.Console` (e.g. `{"file": f, "force_terminal": True}`).

    Example:
        >>> ember.Trainer(callbacks=[RichProgressBar(leave=True)])
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False, theme: RichProgressBarTheme | None = None,
                 console_kwargs: dict[str, Any] | None = None, stream: TextIO | None = None) -> None:
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"RichProgressBar(refresh_rate={refresh_rate!r}): expected a number of batches >= 0 "
                             "(0 turns the bar off).")
        super().__init__(stream=stream)
        self._refresh_rate, self._leave = refresh_rate, leave
        self.theme = theme or RichProgressBarTheme()
        self._console_kwargs = dict(console_kwargs or {})
        self._rich: Any = None
        self.progress: Any = None  # the rich.progress.Progress while a loop draws
        self._tasks: dict[str, Any] = {}
        if refresh_rate == 0:
            self.disable()

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._rich is None and self.is_enabled and trainer.is_global_zero:
            self._rich = _rich_or_none(type(self).__name__) or False

    def _due(self, now: float, batch_idx: int) -> bool:
        return (batch_idx + 1) % self._refresh_rate == 0 or batch_idx + 1 == self.total_train_batches

    # --- drawing with rich --------------------------------------------------------------------------

    def _active(self, trainer) -> bool:
        return bool(self._rich) and self.is_enabled and trainer.is_global_zero

    def _start(self) -> None:
        if self.progress is not None:
            return
        progress, theme = self._rich.progress, self.theme
        console = self._rich.console.Console(**self._console_kwargs)
        self.progress = progress.Progress(
            progress.TextColumn("[progress.description]{task.description}", style=theme.description),
            progress.BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                               pulse_style=theme.progress_bar_pulse),
            progress.MofNCompleteColumn(),
            progress.TimeElapsedColumn(),
            progress.TextColumn("{task.fields[metrics]}", style=theme.metrics),
            console=console, auto_refresh=False, transient=False)
        self.progress.start()

    def _add(self, kind: str, description: str, total: float) -> None:
        self._start()
        old = self._tasks.pop(kind, None)
        if old is not None and not self._leave:
            self.progress.remove_task(old)
        finite = None if total == float("inf") else int(total)
        self._tasks[kind] = self.progress.add_task(description, total=finite, metrics="")

    def _update(self, trainer, kind: str, done: int, metrics: bool = True) -> None:
        if kind not in self._tasks:
            return
        text = ""
        if metrics:
            values = self.get_metrics(trainer, trainer.lightning_module)
            text = self.theme.metrics_text_delimiter.join(f"{k}: {_fmt(v, self.theme.metrics_format)}"
                                                          for k, v in values.items())
        self.progress.update(self._tasks[kind], completed=done, metrics=text)
        self.progress.refresh()

    def _finish(self, kind: str) -> None:
        task = self._tasks.pop(kind, None)
        if task is not None and self.progress is not None and not self._leave and kind != "train":
            self.progress.remove_task(task)

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None
            self._tasks.clear()

    # --- hooks ----------------------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return super().on_train_epoch_start(trainer, pl_module)
        epochs = f"/{trainer.max_epochs - 1}" if trainer.max_epochs not in (-1, None) else ""
        self._add("train", f"Epoch {trainer.current_epoch}{epochs}", self.total_train_batches)
        self._update(trainer, "train", trainer.fit_state.batches_done, metrics=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._active(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._due(0.0, batch_idx):
            self._update(trainer, "train", batch_idx + 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return super().on_train_epoch_end(trainer, pl_module)
        self._update(trainer, "train", trainer.fit_state.batches_done)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._active(trainer):
            self._stop()

    def _eval_start(self, trainer, kind: str, description: str, total: float) -> None:
        if self._active(trainer) and total:
            self._add(kind, description, total)

    def _eval_batch(self, trainer, kind: str, batch_idx: int) -> None:
        if self._active(trainer) and ((batch_idx + 1) % self._refresh_rate == 0):
            self._update(trainer, kind, batch_idx + 1, metrics=False)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            self._eval_start(trainer, "validate", self.sanity_check_description, sum(trainer.num_sanity_val_batches))
        else:
            self._eval_start(trainer, "validate", self.validation_description, self.total_val_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, "validate", batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return super().on_validation_end(trainer, pl_module)
        self._finish("validate")
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._update(trainer, "train", trainer.fit_state.batches_done)
        elif trainer.state.fn == "validate":
            self._stop()

    def on_test_start(self, trainer, pl_module) -> None:
        self._eval_start(trainer, "test", self.test_description, sum(trainer.num_test_batches))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, "test", batch_idx)

    def on_test_end(self, trainer, pl_module) -> None:
        if self._active(trainer):
            self._stop()

    def on_predict_start(self, trainer, pl_module) -> None:
        self._eval_start(trainer, "predict", self.predict_description, sum(trainer.num_predict_batches))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, "predict", batch_idx)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._active(trainer):
            self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop()


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, float) else str(value)


class RichModelSummary(ModelSummary):
    """The model summary as a rich table (ember's plain table without rich).

    Args:
        max_depth: how many levels of submodules to list.
        **summarize_kwargs: `header_style` (default 'bold magenta') and `console_kwargs` for the console.

    Example:
        >>> ember.Trainer(callbacks=[RichModelSummary(max_depth=2)], enable_model_summary=False)
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        super().__init__(max_depth=max_depth)
        unknown = set(summarize_kwargs) - {"header_style", "console_kwargs"}
        if unknown:
            raise TypeError(f"RichModelSummary got {sorted(unknown)}; it takes max_depth, header_style and "
                            "console_kwargs.")
        self._header_style = summarize_kwargs.get("header_style", "bold magenta")
        self._console_kwargs = dict(summarize_kwargs.get("console_kwargs") or {})

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        rich = _rich_or_none(type(self).__name__)
        if not rich:
            log.info(summarize(pl_module, self.max_depth))
            return
        rows, totals = summary_rows(pl_module, self.max_depth)
        table = rich.table.Table(header_style=self._header_style)
        for column in ("", "Name", "Type", "Params"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console = rich.console.Console(**self._console_kwargs)
        console.print(table)
        console.print("\n".join(totals))


__all__ = ["RichModelSummary", "RichProgressBar", "RichProgressBarTheme"]
