"""ModelCheckpoint: keep the top-k checkpoints by a monitored metric, and/or the last one."""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any

import torch

from ember._logging import log
from ember.callbacks.base import Callback
from ember.checkpoint import EXTENSION

_GROUP = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")


class ModelCheckpoint(Callback):
    """Save checkpoints during fit: the best `save_top_k` by `monitor`, and `last.ckpt` if `save_last`.

    Args:
        dirpath: folder of the files; default `<log_dir>/checkpoints` (or `<default_root_dir>/checkpoints`).
        filename: a template such as `'{epoch}-{val_loss:.2f}'` (metric names may contain `/`, which
            becomes `_` in the file name); default `'{epoch}-{step}'`.
        monitor: the logged key to rank checkpoints by; None keeps the most recent.
        mode: 'min' or 'max'.
        save_top_k: how many to keep (-1 all, 0 none).
        save_last: also write `last.ckpt` on every save.
        every_n_epochs / every_n_train_steps / train_time_interval: when to save (one of them).
        save_on_train_epoch_end: save at the end of the training epoch (default: when validation runs
            once per epoch or not at all) rather than after each validation.

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
        if sum(x is not None and x != 0 for x in (every_n_train_steps, every_n_epochs, train_time_interval)) > 1:
            raise ValueError("ModelCheckpoint: set only one of every_n_train_steps, every_n_epochs, "
                             "train_time_interval.")
        self.dirpath = os.fspath(dirpath) if dirpath is not None else None
        if filename and filename.endswith(EXTENSION):
            filename = filename[: -len(EXTENSION)]  # 'best.ckpt' means best.ckpt, not best.ckpt.ckpt
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self.every_n_train_steps = every_n_train_steps or 0
        self.train_time_interval = _seconds(train_time_interval)
        self.every_n_epochs = every_n_epochs if every_n_epochs is not None else (
            0 if self.every_n_train_steps or self.train_time_interval else 1)
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self.enable_version_counter = enable_version_counter

        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_path = ""
        self.best_model_score: torch.Tensor | None = None
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = -1
        self._last_time = time.monotonic()

    @property
    def state_key(self) -> str:
        return self._state_key_with(monitor=self.monitor, mode=self.mode,
                                    every_n_train_steps=self.every_n_train_steps,
                                    every_n_epochs=self.every_n_epochs,
                                    train_time_interval=self.train_time_interval)

    # --- when -------------------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.dirpath is None:
            root = trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir
            self.dirpath = os.path.join(root, "checkpoints")
        self._last_time = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._skip(trainer) or not trainer.fit_state.stepped:
            return
        due = self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0
        if self.train_time_interval and time.monotonic() - self._last_time >= self.train_time_interval:
            due, self._last_time = True, time.monotonic()
        if due:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._skip(trainer) and self._on_train_epoch_end(trainer) and self._epoch_due(trainer):
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._skip(trainer) and not self._on_train_epoch_end(trainer) and self._epoch_due(trainer):
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
        if trainer.global_step == self._last_global_step_saved and trainer.fit_state.batches_done and \
                not trainer.fit_state.epoch_finished:
            return
        metrics = dict(trainer.callback_metrics)
        metrics.setdefault("epoch", torch.tensor(trainer.current_epoch))
        metrics.setdefault("step", torch.tensor(trainer.global_step))
        if self.monitor is not None:
            self._save_top_k(trainer, metrics)
        elif self.save_top_k != 0:
            self._save_latest(trainer, metrics)
        if self.save_last:
            self._save_last(trainer)
        self._last_global_step_saved = trainer.global_step
        for logger in trainer.loggers:
            logger.after_save_checkpoint(self)

    def _save_top_k(self, trainer, metrics: dict[str, Any]) -> None:
        if self.monitor not in metrics:
            logged = sorted(k for k in metrics if k not in ("epoch", "step"))
            raise KeyError(
                f"ModelCheckpoint(monitor={self.monitor!r}) found no such logged value. Logged keys: {logged}. "
                "Log it with self.log(...) in validation_step or training_step, or fix the monitor name.")
        score = metrics[self.monitor].detach().float().cpu()
        if not torch.isfinite(score):
            score = torch.tensor(math.inf if self.mode == "min" else -math.inf)
        self.current_score = score
        if self.save_top_k == 0 or not self._improves(score):
            return
        path = self._unique_path(self.format_checkpoint_name(metrics))
        trainer.save_checkpoint(path, self.save_weights_only)
        self.best_k_models[path] = score
        if self.save_top_k != -1 and len(self.best_k_models) > self.save_top_k:
            worst = self._worst()
            self.best_k_models.pop(worst)
            if worst != path:
                _remove(worst, trainer)
        self.kth_best_model_path = self._worst()
        best = (min if self.mode == "min" else max)(self.best_k_models, key=lambda p: self.best_k_models[p])
        self.best_model_path, self.best_model_score = best, self.best_k_models[best]
        if self.verbose and trainer.is_global_zero:
            log.info(f"Epoch {trainer.current_epoch}, step {trainer.global_step}: {self.monitor!r} reached "
                     f"{score.item():.5f}; saved {path}")

    def _save_latest(self, trainer, metrics: dict[str, Any]) -> None:
        path = self.format_checkpoint_name(metrics)
        previous = self.best_model_path
        trainer.save_checkpoint(path, self.save_weights_only)
        if self.save_top_k == 1 and previous and previous != path:
            _remove(previous, trainer)
            self.best_k_models.pop(previous, None)
        self.best_model_path = path
        self.best_k_models[path] = torch.tensor(trainer.global_step)

    def _save_last(self, trainer) -> None:
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + EXTENSION)
        self.last_model_path = path
        trainer.save_checkpoint(path, self.save_weights_only)

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
        """The file path for these metrics: `'{epoch}-{val_loss:.2f}'` -> `epoch=3-val_loss=0.12.ckpt`."""
        template = filename or self.filename or "{epoch}-{step}"

        def fill(match: re.Match) -> str:
            name, spec = match.group(1), match.group(2) or ""
            if name not in metrics:
                raise KeyError(f"ModelCheckpoint(filename={template!r}) uses {{{name}}}, which was not logged. "
                               f"Logged keys: {sorted(metrics)}.")
            value = metrics[name]
            value = value.item() if isinstance(value, torch.Tensor) else value
            if name in ("epoch", "step") and not spec:
                value = int(value)
            text = format(value, spec[1:]) if spec else str(value)
            return f"{name.replace('/', '_')}={text}" if self.auto_insert_metric_name else text

        return os.path.join(self.dirpath, _GROUP.sub(fill, template) + EXTENSION)

    def _unique_path(self, path: str) -> str:
        if not self.enable_version_counter or path in self.best_k_models or not os.path.exists(path):
            return path
        stem = path[: -len(EXTENSION)]
        version = 1
        while os.path.exists(f"{stem}-v{version}{EXTENSION}"):
            version += 1
        return f"{stem}-v{version}{EXTENSION}"

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "mode": self.mode, "dirpath": self.dirpath,
            "best_model_score": self.best_model_score, "best_model_path": self.best_model_path,
            "current_score": self.current_score, "kth_best_model_path": self.kth_best_model_path,
            "best_k_models": dict(self.best_k_models), "last_model_path": self.last_model_path,
            "last_global_step_saved": self._last_global_step_saved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("dirpath") != self.dirpath:
            # a different folder: keep saving here, but do not delete or rank files of the old one
            print(f"ModelCheckpoint: the checkpoint's files were in {state.get('dirpath')!r}; this run saves to "
                  f"{self.dirpath!r}, so the top-k ranking starts anew.")
            return
        self.best_model_score = state["best_model_score"]
        self.best_model_path = state["best_model_path"]
        self.current_score = state["current_score"]
        self.kth_best_model_path = state["kth_best_model_path"]
        self.best_k_models = dict(state["best_k_models"])
        self.last_model_path = state["last_model_path"]
        self._last_global_step_saved = state["last_global_step_saved"]


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
