"""ModelCheckpoint: keep the top-k checkpoints by a monitored metric, and/or the last one."""

from __future__ import annotations

import math
import os
import string
import time
import warnings
from typing import Any

import torch

from ember._logging import log
from ember.callbacks.base import Callback
from ember.checkpoint import EXTENSION

DEFAULT_FILENAME = "{epoch}-{step}"
_FORMATTER = string.Formatter()


class ModelCheckpoint(Callback):
    """Save checkpoints during fit: the best `save_top_k` by `monitor`, and `last.ckpt` if `save_last`.

    Every file holds the callback's state as it is after that save (the ranking with the file itself in
    it), so a fit resumed from any of them goes on ranking and deleting exactly the files it should.

    A `monitor` key not logged yet when a save is due (a step-based save before the first validation)
    warns once and skips that top-k save; once validation has run in this fit (or, in a fit without
    validation, once a training epoch has ended) a missing key raises a ValueError naming the logged
    keys. A `filename` key follows the same rule, with 0 in its place while it warns (as Lightning
    fills unknown keys).

    Subclasses may set `CHECKPOINT_NAME_LAST` (a template like `filename`, e.g. `'{epoch}-last'`; the
    previous last file is removed when the name changes) and `FILE_EXTENSION` (of every file).

    Args:
        dirpath: folder of the files; default `<log_dir>/checkpoints` (or `<default_root_dir>/checkpoints`).
        filename: a template such as `'{epoch}-{val_loss:.2f}'` (metric names may contain `/`, which
            becomes `_` in the file name); default `'{epoch}-{step}'`. Checked when the callback is made:
            a bad format spec or unbalanced brace raises a ValueError.
        monitor: the logged key to rank checkpoints by; None keeps the most recent.
        verbose: report each top-k save (an INFO message of the "ember" logger).
        save_last: also write `last.ckpt` on every save.
        save_top_k: how many to keep (-1 all, 0 none).
        save_weights_only: write the weights only (such a file cannot resume a fit).
        mode: 'min' or 'max'.
        auto_insert_metric_name: write `epoch=3` rather than `3` for `{epoch}`.
        every_n_train_steps / every_n_epochs / train_time_interval: when to save (one of them; with none
            given, every epoch).
        save_on_train_epoch_end: save at the end of the training epoch (default: when validation runs
            once per epoch or not at all) rather than after each validation.
        enable_version_counter: a top-k name already on disk gets `-v1`, `-v2`, ... rather than
            overwriting it.

    Example:
        >>> ModelCheckpoint(monitor="dev_loss", filename="{epoch}-{dev_loss:.2f}", save_last=True)
    """

    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = EXTENSION

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 monitor: str | None = None, verbose: bool = False, save_last: bool | None = None,
                 save_top_k: int = 1, save_weights_only: bool = False, mode: str = "min",
                 auto_insert_metric_name: bool = True, every_n_train_steps: int | None = None,
                 train_time_interval: Any = None, every_n_epochs: int | None = None,
                 save_on_train_epoch_end: bool | None = None, enable_version_counter: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"ModelCheckpoint(mode={mode!r}): expected 'min' or 'max'.")
        if save_top_k < -1:
            raise ValueError(f"ModelCheckpoint(save_top_k={save_top_k}) must be >= -1.")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise ValueError(f"ModelCheckpoint(save_top_k={save_top_k}) ranks checkpoints, which needs "
                             "monitor='<logged key>'.")
        for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and value < 0:
                raise ValueError(f"ModelCheckpoint({name}={value}) must be >= 0 (0 turns it off).")
        if sum(bool(x) for x in (every_n_train_steps, every_n_epochs, train_time_interval)) > 1:
            raise ValueError("ModelCheckpoint: set only one of every_n_train_steps, every_n_epochs, "
                             "train_time_interval.")
        self.dirpath = os.fspath(dirpath) if dirpath is not None else None
        if filename and self.FILE_EXTENSION and filename.endswith(self.FILE_EXTENSION):
            filename = filename[: -len(self.FILE_EXTENSION)]  # 'best.ckpt' means best.ckpt, not best.ckpt.ckpt
        self._check_template(filename or DEFAULT_FILENAME, f"ModelCheckpoint(filename={filename!r})")
        self._check_template(self.CHECKPOINT_NAME_LAST,
                             f"{type(self).__name__}.CHECKPOINT_NAME_LAST = {self.CHECKPOINT_NAME_LAST!r}")
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        # Lightning's rule: with no trigger given, every epoch; a trigger given turns the others off
        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs = 1
        self.every_n_train_steps = every_n_train_steps or 0
        self.every_n_epochs = every_n_epochs or 0
        self._train_time_interval_arg = train_time_interval  # as given, for state_key
        self.train_time_interval = _seconds(train_time_interval)
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self.enable_version_counter = enable_version_counter

        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_path = ""
        self.best_model_score: torch.Tensor | None = None
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = -1
        self._resumed_at_ns: int | None = None
        self._dropping: list[str] = []  # files this save removes once its own files are written  # mtime of the checkpoint a resumed fit started from
        self._last_time = time.monotonic()
        # when, in this fit, every key that will be logged has been (None: not yet); see _missing
        self._all_logged_once: str | None = None
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        return self._state_key_with(monitor=self.monitor, mode=self.mode,
                                    every_n_train_steps=self.every_n_train_steps,
                                    every_n_epochs=self.every_n_epochs,
                                    train_time_interval=self._train_time_interval_arg)

    # --- when -------------------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.dirpath is None:
            root = trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir
            self.dirpath = os.path.join(root, "checkpoints")
        self._last_time = time.monotonic()
        if stage == "fit":
            self._all_logged_once, self._warned = None, set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not (self.every_n_train_steps or self.train_time_interval) or not trainer.fit_state.stepped:
            return  # (the common case: saving by epoch, decided without reading the trainer's state)
        if self._skip(trainer):
            return
        due = self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0
        if self.train_time_interval:
            elapsed = time.monotonic() - self._last_time >= self.train_time_interval
            if trainer.world_size > 1:  # clocks differ between processes: rank 0's decides
                elapsed = trainer.strategy.broadcast(elapsed)
            if elapsed:
                due, self._last_time = True, time.monotonic()
        if due:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._skip(trainer):
            return
        if not trainer.enable_validation and self._all_logged_once is None:
            self._all_logged_once = "a training epoch has ended (this fit has no validation)"
        if self._on_train_epoch_end(trainer) and self._epoch_due(trainer):
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._skip(trainer):
            return
        if self._all_logged_once is None:
            self._all_logged_once = "validation has run"
        if not self._on_train_epoch_end(trainer) and self._epoch_due(trainer):
            self._save(trainer)

    def _skip(self, trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.sanity_checking or trainer.state != "fit"

    def _epoch_due(self, trainer) -> bool:
        return self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0 \
            and not self.every_n_train_steps

    def _on_train_epoch_end(self, trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False
        if not trainer.enable_validation:
            return True
        return trainer.val_check_batch >= trainer.num_training_batches

    # --- what -------------------------------------------------------------------------------------

    def _save(self, trainer) -> None:
        """Update the state, write the files (each holding that state), then remove the files it dropped.

        In that order so that every file written holds the state after this save; a failed write puts
        the state back as it was and removes the files of this save that it had already written.
        """
        if trainer.global_step == self._last_global_step_saved and trainer.fit_state.batches_done and \
                not trainer.fit_state.epoch_finished:
            return
        metrics = dict(trainer.callback_metrics)
        if trainer.world_size > 1:  # every rank decides from rank 0's values, so all of them save together
            metrics = trainer.strategy.broadcast(metrics)
        metrics.setdefault("epoch", torch.tensor(trainer.current_epoch))
        metrics.setdefault("step", torch.tensor(trainer.global_step))
        before = self.state_dict()
        drops: list[str] = []
        try:
            top = None
            if self.monitor is not None:
                top = self._rank(trainer, metrics, drops)
            elif self.save_top_k != 0:
                top = self._keep_latest(trainer, metrics, drops)
            writes = [top] if top else []
            if self.save_last:
                writes.append(self._name_last(trainer, metrics, drops))
            if not writes:
                return
            self._last_global_step_saved = trainer.global_step
            # the files written hold the removals still to do: a run killed before them, resumed from one
            # of these files, does them (else a dropped file would stay forever)
            self._dropping = list(drops)
            self._write(trainer, writes)
        except BaseException:
            self._put_back(before)
            self._dropping = []
            raise
        kept = set(self.best_k_models) | {self.last_model_path}
        for path in drops:
            if path not in kept:
                _remove(path, trainer)
        self._dropping = []
        if self.verbose and top and self.monitor is not None and trainer.is_global_zero:
            log.info(f"Epoch {trainer.current_epoch}, step {trainer.global_step}: {self.monitor!r} reached "
                     f"{self.current_score.item():.5f}; saved {top}")
        for logger in trainer.loggers:
            logger.after_save_checkpoint(self)

    def _write(self, trainer, paths: list[str]) -> None:
        new: list[str] = []
        try:
            for path in paths:
                existed = os.path.exists(path)
                trainer.save_checkpoint(path, self.save_weights_only)
                if not existed:
                    new.append(path)
        except BaseException:
            for path in new:  # the state they hold is being rolled back; nothing will ever rank them
                _remove(path, trainer)
            raise

    def _rank(self, trainer, metrics: dict[str, Any], drops: list[str]) -> str | None:
        """Put this save into the top-k ranking if it makes it; returns its file (None: not ranked)."""
        if self.save_top_k == 0:
            return None
        if self.monitor not in metrics:
            self._missing([self.monitor], metrics, trainer, what=f"ModelCheckpoint(monitor={self.monitor!r})",
                          skipped="skipping this top-k save",
                          fix=f"Log it with self.log({self.monitor!r}, value) in validation_step or "
                              "training_step, or fix the monitor name.")
            return None
        score = metrics[self.monitor].detach().float().cpu().reshape(())
        if not torch.isfinite(score):
            score = torch.tensor(math.inf if self.mode == "min" else -math.inf)
        self.current_score = score
        if not self._improves(score):
            return None
        path = self._unique_path(self._name(self.filename or DEFAULT_FILENAME, metrics, trainer, "filename"))
        self.best_k_models[path] = score
        if self.save_top_k != -1 and len(self.best_k_models) > self.save_top_k:
            worst = self._worst()
            self.best_k_models.pop(worst)
            drops.append(worst)
        self.kth_best_model_path = self._worst()
        best = (min if self.mode == "min" else max)(self.best_k_models, key=lambda p: self.best_k_models[p])
        self.best_model_path, self.best_model_score = best, self.best_k_models[best]
        return path

    def _keep_latest(self, trainer, metrics: dict[str, Any], drops: list[str]) -> str:
        path = self._name(self.filename or DEFAULT_FILENAME, metrics, trainer, "filename")
        previous, self.best_model_path = self.best_model_path, path
        if self.save_top_k == 1 and previous and previous != path:
            self.best_k_models.pop(previous, None)
            drops.append(previous)
        self.best_k_models[path] = torch.tensor(trainer.global_step)
        return path

    def _name_last(self, trainer, metrics: dict[str, Any], drops: list[str]) -> str:
        # a template, as in Lightning: with '{epoch}-last' each save makes a new name, and the old file goes
        path = self._name(self.CHECKPOINT_NAME_LAST, metrics, trainer, "CHECKPOINT_NAME_LAST")
        previous, self.last_model_path = self.last_model_path, path
        if previous and previous != path:
            drops.append(previous)
        return path

    def _name(self, template: str, metrics: dict[str, Any], trainer, argument: str) -> str:
        missing = [field for field in _fields(template) if field not in metrics]
        if missing:
            given = f"ModelCheckpoint({argument}={template!r})" if argument == "filename" else \
                f"{type(self).__name__}.{argument} = {template!r}"
            self._missing(missing, metrics, trainer, what=given, skipped="0 is written in its place",
                          fix="Log it with self.log(...), or fix the name in the template.")
        return self.format_checkpoint_name(metrics, template)

    def _missing(self, keys: list[str], metrics: dict[str, Any], trainer, what: str, skipped: str,
                 fix: str) -> None:
        """A key this callback needs is not logged: an error once every key must have been, else a warning.

        Before the first validation of a fit, a key logged only in validation cannot be there yet; after
        it (or after a training epoch of a fit without validation), a missing key is a mistake.
        """
        logged = sorted(k for k in metrics if k not in ("epoch", "step"))
        names = ", ".join(repr(k) for k in keys)
        if self._all_logged_once is not None:
            raise ValueError(f"{what}: {names} not found in the logged values once {self._all_logged_once}. "
                             f"Logged keys: {logged}. {fix}")
        message = f"{what}: {names} not logged yet"
        if message not in self._warned:
            self._warned.add(message)
            before = "the first validation of this fit" if trainer.enable_validation else \
                "the end of the first training epoch"
            warnings.warn(f"{message} at epoch {trainer.current_epoch}, step {trainer.global_step}, before "
                          f"{before}; {skipped}. Logged keys: {logged}. If it is logged later (in validation, "
                          f"or at epoch end), this is expected; otherwise: {fix}", UserWarning, stacklevel=2)

    def _improves(self, score: torch.Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        worst = self.best_k_models[self._worst()]
        return bool(score < worst) if self.mode == "min" else bool(score > worst)

    def _worst(self) -> str:
        if not self.best_k_models:
            return ""
        pick = max if self.mode == "min" else min
        return pick(self.best_k_models, key=lambda p: self.best_k_models[p])

    def format_checkpoint_name(self, metrics: dict[str, Any], filename: str | None = None) -> str:
        """The file path for these metrics: `'{epoch}-{val_loss:.2f}'` -> `epoch=3-val_loss=0.12.ckpt`.

        A key not in `metrics` is written as 0, as Lightning does; during fit the callback first warns or
        raises about it (see the class docstring).

        Args:
            metrics: the values to fill in, by key (tensors or numbers).
            filename: the template; default this callback's `filename`.

        Example:
            >>> ModelCheckpoint(dirpath="ckpt", filename="{epoch}-{val_loss:.2f}").format_checkpoint_name(
            ...     {"epoch": 3, "val_loss": torch.tensor(0.1234)})
            'ckpt/epoch=3-val_loss=0.12.ckpt'
        """
        template = filename or self.filename or DEFAULT_FILENAME
        parts = []
        for literal, field, spec, conversion in _FORMATTER.parse(template):
            parts.append(literal)
            if field is None:
                continue
            value = metrics.get(field, 0)
            value = value.item() if isinstance(value, torch.Tensor) else value
            if field in ("epoch", "step") and not spec:
                value = int(value)
            if conversion:
                value = _FORMATTER.convert_field(value, conversion)
            text = format(value, spec)
            parts.append(f"{field.replace('/', '_')}={text}" if self.auto_insert_metric_name else text)
        return os.path.join(self.dirpath or "", "".join(parts) + self.FILE_EXTENSION)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.ckpt_path and os.path.exists(trainer.ckpt_path):
            self._resumed_at_ns = os.stat(trainer.ckpt_path).st_mtime_ns

    def _unique_path(self, path: str) -> str:
        if not self.enable_version_counter or path in self.best_k_models or not os.path.exists(path):
            return path
        if self._resumed_at_ns is not None and os.stat(path).st_mtime_ns > self._resumed_at_ns:
            # written after the checkpoint this fit resumed from: by the run that was killed, which this
            # one repeats; overwrite it, as the uninterrupted run would have been the only one to write it
            return path
        stem = path[: len(path) - len(self.FILE_EXTENSION)]
        version = 1
        while os.path.exists(f"{stem}-v{version}{self.FILE_EXTENSION}"):
            version += 1
        return f"{stem}-v{version}{self.FILE_EXTENSION}"

    @staticmethod
    def _check_template(template: str, given: str) -> None:
        """Raise now for a template that could never make a file name, rather than at the first save."""
        try:
            fields = list(_FORMATTER.parse(template))
        except ValueError as err:
            raise ValueError(f"{given} is not a valid template ({err}). Write each value as '{{name}}' or "
                             "'{name:.2f}', and a literal brace as '{{' or '}}'.") from None
        for _, field, spec, conversion in fields:
            if field is None:
                continue
            if not field:
                raise ValueError(f"{given} has an empty field '{{}}'. Name the logged value in it, e.g. "
                                 "'{val_loss:.2f}'.")
            if conversion not in (None, "r", "s", "a"):
                raise ValueError(f"{given}: '!{conversion}' in {{{field}!{conversion}}} is not a conversion "
                                 f"(expected !r, !s or !a). Most likely you want '{{{field}}}'.")
            reason = _spec_error(spec) if spec else None
            if reason is not None:
                raise ValueError(f"{given}: the format spec {spec!r} of {{{field}}} cannot format a number "
                                 f"({reason}). Use a spec such as '.2f', '.4g' or '03d', or none: '{{{field}}}'.")

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "mode": self.mode, "dirpath": self.dirpath,
            "best_model_score": self.best_model_score, "best_model_path": self.best_model_path,
            "current_score": self.current_score, "kth_best_model_path": self.kth_best_model_path,
            "best_k_models": dict(self.best_k_models), "last_model_path": self.last_model_path,
            "last_global_step_saved": self._last_global_step_saved, "dropping": list(self._dropping),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("dirpath") != self.dirpath:
            # a different folder: keep saving here, but do not delete or rank files of the old one
            warnings.warn(
                f"ModelCheckpoint: the checkpoint's files were in {state.get('dirpath')!r}; this run saves to "
                f"{self.dirpath!r}, so the top-k ranking starts anew and no file of the old folder is ranked or "
                f"deleted. To go on with that ranking, pass ModelCheckpoint(dirpath={state.get('dirpath')!r}).",
                UserWarning, stacklevel=2)
            return
        self._put_back(state)
        kept = set(self.best_k_models) | {self.last_model_path}
        for path in state.get("dropping", []):  # removals the run that wrote this file did not get to
            if path not in kept:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def _put_back(self, state: dict[str, Any]) -> None:
        self.best_model_score = state["best_model_score"]
        self.best_model_path = state["best_model_path"]
        self.current_score = state["current_score"]
        self.kth_best_model_path = state["kth_best_model_path"]
        self.best_k_models = dict(state["best_k_models"])
        self.last_model_path = state["last_model_path"]
        self._last_global_step_saved = state["last_global_step_saved"]


def _fields(template: str) -> list[str]:
    return [field for _, field, _, _ in _FORMATTER.parse(template) if field]


def _spec_error(spec: str) -> str | None:
    """Why `spec` formats no number (None: it formats a float or an int, so it may be meant)."""
    try:
        format(0, spec)  # epoch and step are ints; a spec like '03d' formats only those
        return None
    except ValueError:
        pass
    try:
        format(0.0, spec)  # a metric is a float
        return None
    except ValueError as err:
        return str(err)


def _remove(path: str, trainer) -> None:
    if trainer.is_global_zero and path and os.path.exists(path):
        os.remove(path)


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return float(value)


__all__ = ["ModelCheckpoint"]
