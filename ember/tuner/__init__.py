"""Tuner: find a learning rate (`lr_find`) and the largest batch size that fits (`scale_batch_size`).

Both run short trial fits on a throwaway Trainer configured like yours (device, precision,
accumulation, clipping) but with no logger, checkpoints, progress bar or callbacks, and then put back
the model's weights, its train/eval modes and the RNG states from a temporary checkpoint. What changes
is only the value they choose. Your Trainer is read, never modified, so `Tuner(deepcopy(trainer))`
and `Tuner(trainer)` do the same thing.
"""

from __future__ import annotations

from typing import Any

from ember.tuner.lr_find import LRFinder, _LRFinder

__all__ = ["Tuner", "LRFinder", "_LRFinder"]


class Tuner:
    """Tune a model's learning rate and batch size with the settings of `trainer`.

    Example:
        >>> tuner = ember.tuner.Tuner(trainer)
        >>> tuner.scale_batch_size(model, datamodule=dm, mode="binsearch")
        48
        >>> tuner.lr_find(model, datamodule=dm).suggestion()
        0.0091
        >>> trainer.fit(model, datamodule=dm)
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def lr_find(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: Any = None, method: str = "fit", min_lr: float = 1e-8,
                max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                attr_name: str = "") -> LRFinder:
        """Sweep the learning rate from `min_lr` to `max_lr` over `num_training` steps and record the loss.

        Args:
            model: the Module; its weights, modes and the RNG states are put back afterwards.
            train_dataloaders / val_dataloaders / datamodule: the data, as for `trainer.fit`.
            dataloaders, method: Lightning's signature; only method='fit' is meaningful here.
            min_lr, max_lr: the range of the sweep.
            num_training: optimizer steps in the sweep.
            mode: 'exponential' (even steps in log space) or 'linear'.
            early_stop_threshold: stop once the smoothed loss exceeds this multiple of the best one
                (None: never).
            update_attr: set the suggestion as the model's `lr` / `learning_rate` (attribute or
                `hparams` key, on the model or the datamodule; every place that has it).
            attr_name: the name to set instead of `lr` / `learning_rate`.

        Returns:
            An `LRFinder` with `.results`, `.suggestion()` and `.plot()`.

        Example:
            >>> finder = Tuner(trainer).lr_find(model, datamodule=dm, max_lr=1.0)
            >>> model.lr  # the suggestion
            0.012
        """
        from ember.tuner.lr_find import lr_find

        return lr_find(self._trainer, model, train_dataloaders, val_dataloaders, dataloaders, datamodule, method,
                       min_lr, max_lr, num_training, mode, early_stop_threshold, update_attr, attr_name)

    def scale_batch_size(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: Any = None, method: str = "fit",
                         mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size") -> int:
        """Find the largest batch size that runs `steps_per_trial` steps without running out of memory.

        The size is read from and written to `batch_arg_name` wherever it lives: an attribute or an
        `hparams` key of the model or of the datamodule. The dataloaders are rebuilt for each trial, so
        they must be built in `train_dataloader()` (etc.) from that value, not passed in.

        Args:
            model: the Module; its weights, modes and the RNG states are put back afterwards.
            datamodule: where the dataloaders (and perhaps the batch size) come from.
            method: the loop to try: 'fit', 'validate', 'test' or 'predict'.
            mode: 'power' doubles until a trial runs out of memory; 'binsearch' then bisects between the
                last size that fit and the first that did not.
            steps_per_trial: batches (optimizer steps for 'fit') per trial.
            init_val: the first size tried (values below 1 start at 1).
            max_trials: the most trials to run. Sizes beyond the dataset size are never tried.
            batch_arg_name: the name of the batch size.

        Returns:
            The batch size chosen, which is also set as `batch_arg_name`.

        Example:
            >>> Tuner(trainer).scale_batch_size(model, datamodule=dm, mode="binsearch", init_val=16)
            37
        """
        from ember.tuner.batch_size import scale_batch_size

        return scale_batch_size(self._trainer, model, train_dataloaders, val_dataloaders, dataloaders, datamodule,
                                method, mode, steps_per_trial, init_val, max_trials, batch_arg_name)
