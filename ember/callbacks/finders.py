"""LearningRateFinder and BatchSizeFinder: the tuner (`ember.tuner`) run from inside a fit, as callbacks."""

from __future__ import annotations

from typing import Any

from ember._logging import log
from ember.callbacks.base import Callback


class LearningRateFinder(Callback):
    """Run the learning-rate range test when fit starts, set the suggestion as the model's learning rate and
    train with it.

    The sweep runs on a throwaway Trainer, and the model's weights and the RNG states are put back after it
    (see `ember.tuner`); the optimizers are then built again from `configure_optimizers`, which reads the new
    value. A fit resumed from a checkpoint does not search again: it keeps the rate it was trained with.

    Args:
        min_lr, max_lr, num_training_steps, mode, early_stop_threshold: the sweep (`Tuner.lr_find`).
        update_attr: set the suggestion as `lr` / `learning_rate` (or `attr_name`) of the model.
        attr_name: the name to set.

    Attributes:
        optimal_lr: the `LRFinder` of the sweep (`.results`, `.suggestion()`, `.plot()`).

    Example:
        >>> ember.Trainer(callbacks=[LearningRateFinder(max_lr=1.0)])
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1.0, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"LearningRateFinder(mode={mode!r}): expected one of {', '.join(self.SUPPORTED_MODES)}.")
        self._min_lr, self._max_lr, self._num_training_steps = min_lr, max_lr, num_training_steps
        self._mode, self._early_stop_threshold = mode, early_stop_threshold
        self._update_attr, self._attr_name = update_attr, attr_name
        self.optimal_lr: Any = None

    def lr_find(self, trainer, pl_module) -> None:
        from ember.tuner import Tuner

        data = _fit_data(trainer)
        self.optimal_lr = Tuner(trainer).lr_find(
            pl_module, **data, min_lr=self._min_lr, max_lr=self._max_lr, num_training=self._num_training_steps,
            mode=self._mode, early_stop_threshold=self._early_stop_threshold, update_attr=self._update_attr,
            attr_name=self._attr_name)

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.global_step > 0 or trainer.current_epoch > 0:
            log.info("LearningRateFinder: the fit resumes from a checkpoint, so the learning rate it was trained "
                     "with is kept (no search).")
            return
        self.lr_find(trainer, pl_module)
        if self._update_attr and trainer.optimization is not None:
            trainer.optimization.configure()  # configure_optimizers again, reading the new learning rate


class BatchSizeFinder(Callback):
    """Find the largest batch size that fits before the loaders of the run are built, and use it.

    It runs in `setup` of fit, validate, test or predict: the size it sets as `batch_arg_name` (on the
    model or the datamodule) is read when the run then builds its dataloaders, so those must be built in
    `train_dataloader()` (etc.) from that value, not passed to `fit`.

    Args:
        mode: 'power' (double until out of memory) or 'binsearch' (then bisect).
        steps_per_trial, init_val, max_trials, batch_arg_name: the search (`Tuner.scale_batch_size`).
        margin: with 'binsearch', the found size is lowered by this fraction, for headroom.
        max_val: the largest size to use.

    Attributes:
        optimal_batch_size: the size found (`init_val` before the search).

    Example:
        >>> ember.Trainer(callbacks=[BatchSizeFinder(mode="binsearch")])
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"BatchSizeFinder(mode={mode!r}): expected one of {', '.join(self.SUPPORTED_MODES)}.")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"BatchSizeFinder(margin={margin}): expected a fraction in [0, 1).")
        if max_val < 1:
            raise ValueError(f"BatchSizeFinder(max_val={max_val}): expected a batch size >= 1.")
        self._mode, self._steps_per_trial, self._init_val = mode, steps_per_trial, init_val
        self._max_trials, self._batch_arg_name = max_trials, batch_arg_name
        self._margin, self._max_val = margin, max_val
        self.optimal_batch_size: int | None = init_val

    def scale_batch_size(self, trainer, pl_module, method: str = "fit") -> None:
        from ember.tuner import Tuner
        from ember.tuner.trial import attribute_holders, set_attribute

        if trainer.world_size > 1:
            raise ValueError("BatchSizeFinder runs on one process; with several, each would find its own size. "
                             "Find the size on one device with Tuner(trainer).scale_batch_size(...) and pass it.")
        size = Tuner(trainer).scale_batch_size(
            pl_module, datamodule=trainer.datamodule, method=method, mode=self._mode,
            steps_per_trial=self._steps_per_trial, init_val=min(self._init_val, self._max_val),
            max_trials=self._max_trials, batch_arg_name=self._batch_arg_name)
        chosen = size
        if self._mode == "binsearch" and self._margin > 0:
            chosen = max(1, int(size * (1 - self._margin)))
        chosen = min(chosen, self._max_val)
        if chosen != size:
            set_attribute(attribute_holders(pl_module, trainer.datamodule, self._batch_arg_name),
                          self._batch_arg_name, chosen)
            log.info("BatchSizeFinder: using batch size %d (found %d; margin=%s, max_val=%d).", chosen, size,
                     self._margin, self._max_val)
        self.optimal_batch_size = chosen

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and (trainer.global_step > 0 or trainer.current_epoch > 0):
            return  # a fit resumed from a checkpoint keeps its batch size (its data position depends on it)
        self.scale_batch_size(trainer, pl_module, method=stage)


def _fit_data(trainer) -> dict[str, Any]:
    """What the running fit trains on, to give the tuner the same data."""
    if trainer.datamodule is not None:
        return {"datamodule": trainer.datamodule}
    return {"train_dataloaders": trainer.train_dataloader, "val_dataloaders": trainer._eval_loaders["validate"] or None}


__all__ = ["BatchSizeFinder", "LearningRateFinder"]
