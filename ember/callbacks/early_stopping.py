"""EarlyStopping: stop fitting when a monitored metric stops improving."""

from __future__ import annotations

import math
from typing import Any

import torch

from ember._logging import log
from ember.callbacks.base import Callback


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` checks.

    A check counts once per position of the fit (epoch, global step, batches done): a resumed run that
    runs again the validation its checkpoint was written in does not count it twice.

    Args:
        monitor: the logged key to watch.
        min_delta: the smallest change that counts as an improvement.
        patience: checks without improvement before stopping (a check happens after each validation,
            or at each training epoch end when there is no validation).
        mode: 'min' or 'max'.
        strict: raise a ValueError if `monitor` is not logged when a check is due (otherwise skip it).
        check_finite: stop when the metric becomes NaN or infinite.
        stopping_threshold: stop as soon as the metric is at least this good.
        divergence_threshold: stop as soon as the metric is worse than this.

    Example:
        >>> EarlyStopping(monitor="dev_loss", patience=2)
    """

    def __init__(self, monitor: str, min_delta: float = 0.0, patience: int = 3, verbose: bool = False,
                 mode: str = "min", strict: bool = True, check_finite: bool = True,
                 stopping_threshold: float | None = None, divergence_threshold: float | None = None,
                 check_on_train_epoch_end: bool | None = None, log_rank_zero_only: bool = False):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping(mode={mode!r}): expected 'min' or 'max'.")
        if patience < 0:
            raise ValueError(f"EarlyStopping(patience={patience}) must be >= 0.")
        self.monitor = monitor
        self.min_delta = abs(min_delta) if mode == "max" else -abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.stopping_reason_message: str | None = None
        # where the last check was: (epoch, global_step, batches_done); see _check
        self._last_check: tuple[int, int, int] | None = None

    @property
    def state_key(self) -> str:
        return self._state_key_with(monitor=self.monitor, mode=self.mode)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_train_epoch_end(trainer):
            self._check(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._at_train_epoch_end(trainer):
            self._check(trainer)

    def _at_train_epoch_end(self, trainer) -> bool:
        if self._check_on_train_epoch_end is not None:
            return self._check_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False
        return not trainer.enable_validation or trainer.val_check_batch >= trainer.num_training_batches

    def _check(self, trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state != "fit":
            return
        # batches_done too: with gradient accumulation two validations can share a global step
        position = (trainer.current_epoch, trainer.global_step, trainer.fit_state.batches_done)
        if position == self._last_check:
            return  # this validation was counted before the checkpoint we resumed from was written
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            if self.strict:
                raise ValueError(
                    f"EarlyStopping(monitor={self.monitor!r}) found no such logged value at epoch "
                    f"{trainer.current_epoch}, step {trainer.global_step}. Logged keys: {sorted(metrics)}. Log it "
                    f"with self.log({self.monitor!r}, value), fix the name, or pass strict=False to skip checks "
                    "without it.")
            return
        self._last_check = position
        current = metrics[self.monitor].detach().float().cpu().reshape(())
        stop, reason = self._evaluate(current)
        if stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
            trainer.should_stop = True
            if self.verbose and trainer.is_global_zero:
                log.info(f"EarlyStopping: {reason}")

    def _evaluate(self, current: torch.Tensor) -> tuple[bool, str | None]:
        better = torch.lt if self.mode == "min" else torch.gt
        if self.check_finite and not torch.isfinite(current):
            return True, f"{self.monitor} = {current.item()} is not finite; stopping."
        if self.stopping_threshold is not None and better(current, torch.tensor(self.stopping_threshold)):
            return True, f"{self.monitor} = {current.item():.5f} reached the stopping threshold " \
                         f"{self.stopping_threshold}."
        if self.divergence_threshold is not None and better(torch.tensor(self.divergence_threshold), current):
            return True, f"{self.monitor} = {current.item():.5f} diverged past {self.divergence_threshold}."
        if better(current - self.min_delta, self.best_score):
            self.best_score = current
            self.wait_count = 0
            return False, None
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, f"{self.monitor} did not improve in the last {self.wait_count} checks; best " \
                         f"{self.best_score.item():.5f}."
        return False, None

    def state_dict(self) -> dict[str, Any]:
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch,
                "best_score": self.best_score, "patience": self.patience,
                "last_check": list(self._last_check) if self._last_check is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait_count = state["wait_count"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_score = state["best_score"]
        last_check = state.get("last_check")  # absent from checkpoints of older ember and of Lightning
        self._last_check = tuple(last_check) if last_check is not None else None
