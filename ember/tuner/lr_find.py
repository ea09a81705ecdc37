"""The learning-rate range test: train for a few steps while the learning rate grows, record the loss.

The learning rate sweeps from `min_lr` to `max_lr` over `num_training` optimizer steps (evenly in log
space, or linearly), all parameter groups alike; the user's schedulers are left out of the sweep. The
loss of each step is smoothed with an exponential moving average (bias-corrected, beta = 0.98), the
sweep stops early once the smoothed loss exceeds `early_stop_threshold` times the best so far, and the
suggestion is the learning rate where the smoothed loss falls fastest.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping

import torch

from ember.callbacks.base import Callback
from ember.data import DataModule
from ember.tuner.trial import (attribute_holders, describe, preserved, set_attribute, trial_trainer,
                               where_looked)

SMOOTHING = 0.98
LR_NAMES = ("lr", "learning_rate")

log = logging.getLogger(__name__)


class LRFinder:
    """What `Tuner.lr_find` measured.

    Attributes:
        results: `{"lr": [...], "loss": [...]}`, one entry per optimizer step; `loss` is smoothed.
        raw_losses: the loss of each step before smoothing.
        optimal_index: the index of the last suggestion in `results` (None before `suggestion()`).

    Example:
        >>> finder = Tuner(trainer).lr_find(model)
        >>> finder.suggestion()
        0.012
        >>> fig = finder.plot(suggest=True)
    """

    def __init__(self, mode: str, min_lr: float, max_lr: float, num_training: int,
                 lrs: list[float], losses: list[float], raw_losses: list[float]):
        self.mode, self.lr_min, self.lr_max, self.num_training = mode, min_lr, max_lr, num_training
        self.results: dict[str, list[float]] = {"lr": list(lrs), "loss": list(losses)}
        self.raw_losses = list(raw_losses)
        self.optimal_index: int | None = None

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate at the steepest descent of the smoothed loss, or None with too few points.

        Args:
            skip_begin: steps left out at the start (the average is still warming up there).
            skip_end: steps left out at the end (where the loss starts to diverge).
        """
        losses = self.results["loss"]
        end = len(losses) - skip_end
        points = [(i, losses[i]) for i in range(max(skip_begin, 0), end) if math.isfinite(losses[i])]
        if len(points) < 2:
            warnings.warn(f"lr_find: {len(points)} finite losses between skip_begin={skip_begin} and "
                          f"skip_end={skip_end} (of {len(losses)} steps), too few for a suggestion. Raise "
                          "num_training, lower skip_begin, or pass early_stop_threshold=None so the sweep runs all "
                          "its steps.", stacklevel=2)
            self.optimal_index = None
            return None
        slopes = _gradient([loss for _, loss in points])
        steepest = min(range(len(slopes)), key=slopes.__getitem__)
        self.optimal_index = points[steepest][0]
        return self.results["lr"][self.optimal_index]

    def plot(self, suggest: bool = True, show: bool = False, ax: Any = None) -> Any:
        """Plot the smoothed loss against the learning rate; returns the matplotlib figure.

        Args:
            suggest: mark the suggested learning rate.
            show: call `plt.show()`.
            ax: draw into this matplotlib Axes instead of a new figure.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("LRFinder.plot needs matplotlib: pip install 'ember[plot]'.") from err
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        lrs, losses = self.results["lr"], self.results["loss"]
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss (smoothed)")
        if suggest:
            lr = self.suggestion()
            if lr is not None:
                ax.plot(lr, losses[self.optimal_index], markersize=10, marker="o", color="red",
                        label=f"suggestion: {lr:.3g}")
                ax.legend()
        if show:
            plt.show()
        return fig


# The Lightning name, for code that imports it
_LRFinder = LRFinder


def _gradient(values: list[float]) -> list[float]:
    """Slope at each point: central differences inside, one-sided at the ends (like numpy.gradient)."""
    n = len(values)
    slopes = [values[1] - values[0]]
    slopes += [(values[i + 1] - values[i - 1]) / 2 for i in range(1, n - 1)]
    slopes.append(values[-1] - values[-2])
    return slopes


def lr_schedule(min_lr: float, max_lr: float, num_training: int, mode: str) -> list[float]:
    """The learning rate of each of the `num_training` steps, from min_lr to max_lr inclusive."""
    if num_training == 1:
        return [min_lr]
    fractions = [i / (num_training - 1) for i in range(num_training)]
    if mode == "exponential":
        return [min_lr * (max_lr / min_lr) ** f for f in fractions]
    return [min_lr + (max_lr - min_lr) * f for f in fractions]


class _LRSweep(Callback):
    """Sets the learning rate before every optimizer step and records the loss of every step."""

    def __init__(self, schedule: list[float], early_stop_threshold: float | None):
        self.schedule = schedule
        self.early_stop_threshold = early_stop_threshold
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.raw_losses: list[float] = []
        self._window: list[torch.Tensor] = []  # losses of the batches since the last optimizer step
        self._steps_seen = 0
        self._applied = 0.0
        self._average = 0.0
        self._best = math.inf

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"lr_find sweeps the learning rate of one optimizer; "
                             f"{type(pl_module).__name__}.configure_optimizers returned {len(trainer.optimizers)}.")
        trainer.lr_scheduler_configs = []  # a scheduler stepping during the sweep would fight it

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        lr = self.schedule[min(trainer.global_step, len(self.schedule) - 1)]
        for group in optimizer.param_groups:
            group["lr"] = lr
        self._applied = lr

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._window.append(loss.detach())
        if trainer.global_step == self._steps_seen:
            return  # accumulating gradients: no optimizer step in this batch
        self._steps_seen = trainer.global_step
        if not self._window:
            return
        # note: a host-device sync once per step, only while tuning
        raw = float(torch.stack(self._window).float().mean())
        self._window = []
        k = len(self.losses)
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * raw
        smoothed = self._average / (1 - SMOOTHING ** (k + 1))
        self.lrs.append(self._applied)
        self.raw_losses.append(raw)
        self.losses.append(smoothed)
        diverged = self.early_stop_threshold is not None and k > 0 and \
            smoothed > self.early_stop_threshold * self._best
        if not math.isfinite(smoothed) or diverged:
            trainer.should_stop = True
        self._best = min(self._best, smoothed)


def lr_find(trainer: Any, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
            dataloaders: Any = None, datamodule: Any = None, method: str = "fit", min_lr: float = 1e-8,
            max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
            early_stop_threshold: float | None = 4.0, update_attr: bool = True, attr_name: str = "") -> LRFinder:
    """See `Tuner.lr_find`."""
    if method != "fit":
        raise ValueError(f"lr_find(method={method!r}): the learning rate finder trains, so only method='fit' "
                         "is possible.")
    if dataloaders is not None:
        raise ValueError("lr_find(dataloaders=...) is for validate/test/predict; pass train_dataloaders= "
                         "(and val_dataloaders=) or a datamodule.")
    if mode not in ("exponential", "linear"):
        raise ValueError(f"lr_find(mode={mode!r}): expected 'exponential' or 'linear'.")
    if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 1:
        raise ValueError(f"lr_find(num_training={num_training!r}) must be a positive number of steps.")
    if not (0 <= min_lr < max_lr) or (mode == "exponential" and min_lr <= 0):
        raise ValueError(f"lr_find(min_lr={min_lr}, max_lr={max_lr}): expected 0 < min_lr < max_lr "
                         "(min_lr may be 0 with mode='linear').")
    if early_stop_threshold is not None and early_stop_threshold <= 1:
        raise ValueError(f"lr_find(early_stop_threshold={early_stop_threshold}) must be above 1 (a multiple of "
                         "the best loss), or None to sweep all num_training steps.")
    if isinstance(train_dataloaders, DataModule):
        datamodule, train_dataloaders = train_dataloaders, None

    holders: list = []
    name = attr_name
    if update_attr:
        names = [attr_name] if attr_name else list(LR_NAMES)
        for name in names:
            holders = attribute_holders(model, datamodule, name)
            if holders:
                break
        if not holders:
            looked = "; ".join(where_looked(model, datamodule, n) for n in names)
            raise AttributeError(
                f"lr_find(update_attr=True) found no learning rate to update (looked at {looked}). Give the "
                "model an `lr` or `learning_rate` attribute (or save_hyperparameters with one) that "
                "configure_optimizers reads, pass attr_name='<name>', or pass update_attr=False and use "
                "finder.suggestion().")

    sweep = _LRSweep(lr_schedule(min_lr, max_lr, num_training, mode), early_stop_threshold)
    with preserved(model, datamodule) as folder:
        trial = trial_trainer(trainer, folder, callbacks=[sweep], max_steps=num_training, limit_val_batches=0)
        trial.fit(model, train_dataloaders, val_dataloaders, datamodule)
    if not sweep.losses:
        raise ValueError(f"lr_find recorded no loss: {type(model).__name__}.training_step must return the loss "
                         "(a tensor, or a dict with 'loss') for the finder to read it.")

    finder = LRFinder(mode, min_lr, max_lr, num_training, sweep.lrs, sweep.losses, sweep.raw_losses)
    if update_attr:
        lr = finder.suggestion()
        if lr is not None:
            set_attribute(holders, name, lr)
            log.info(f"lr_find: learning rate set to {lr:.3g} ({describe(holders)}).")
    return finder
