"""StochasticWeightAveraging: average the weights of the last epochs of a fit and end with the average.

From epoch `swa_epoch_start` on, the learning rate anneals to `swa_lrs` (torch's SWALR, stepped once per
epoch in place of the model's scheduler) and, at the start of each epoch up to the last, the weights are
added to a running average. When the fit ends the model takes the averaged weights; a model with batch
norms then gets its running statistics recomputed over one pass of the training data.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import SWALR

from ember._logging import log
from ember.callbacks.base import Callback
from ember.optimizers import LRSchedulerConfig

AverageFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018) for fits with one optimizer.

    Args:
        swa_lrs: the learning rate the SWA phase anneals to: one for every parameter group, or a list with
            one per group.
        swa_epoch_start: the epoch the SWA phase starts: an int (1-based, as in Lightning: 1 is the first
            epoch) or a fraction of `max_epochs`.
        annealing_epochs: epochs over which the learning rate anneals to `swa_lrs`.
        annealing_strategy: 'cos' or 'linear'.
        avg_fn: (averaged parameter, parameter, number averaged so far) -> new average; default: the mean.
        device: where the averaged copy of the model lives (None: the model's device).

    Differences from Lightning: Lightning recomputes batch-norm statistics in an extra training epoch
    (so `current_epoch` ends one past `max_epochs`, and that epoch's callbacks and logging run); ember runs
    that pass over the training data inside `on_train_end`, through `training_step` with gradients off and
    `self.log` ignored, and `current_epoch` ends at `max_epochs`.

    Example:
        >>> ember.Trainer(max_epochs=20, callbacks=[StochasticWeightAveraging(swa_lrs=1e-2)])
    """

    def __init__(self, swa_lrs: float | list[float], swa_epoch_start: int | float = 0.8, annealing_epochs: int = 10,
                 annealing_strategy: str = "cos", avg_fn: AverageFn | None = None,
                 device: torch.device | str | None = torch.device("cpu")) -> None:
        if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or \
                (isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or \
                (isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1):
            raise ValueError(f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): expected an int >= 1 "
                             "(the epoch, counting from 1) or a float in [0, 1] (a fraction of max_epochs).")
        lrs = swa_lrs if isinstance(swa_lrs, list) else [swa_lrs]
        if not isinstance(swa_lrs, (float, list)) or not lrs or \
                not all(isinstance(lr, float) and lr > 0 for lr in lrs):
            raise ValueError(f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): expected a positive float, or a list "
                             "of positive floats (one per parameter group), e.g. swa_lrs=1e-2.")
        if annealing_strategy not in ("cos", "linear"):
            raise ValueError(f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): expected 'cos' "
                             "or 'linear'.")
        if avg_fn is not None and not callable(avg_fn):
            raise ValueError(f"StochasticWeightAveraging(avg_fn={avg_fn!r}): expected a function (averaged, "
                             "parameter, number averaged) -> new average.")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise ValueError(f"StochasticWeightAveraging(device={device!r}): expected a torch.device, a str or None.")
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self._max_epochs = -1
        self._model_contains_batch_norm = False
        self._average_model: nn.Module | None = None
        self._pending_average: dict[str, torch.Tensor] | None = None
        self._swa_scheduler: SWALR | None = None
        self._scheduler_state: dict[str, Any] | None = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self.n_averaged: torch.Tensor | None = None
        self.momenta: dict[_BatchNorm, float | None] = {}

    @property
    def swa_start(self) -> int:
        """The first epoch of the SWA phase, 0-based."""
        return max(int(self._swa_epoch_start) - 1, 0)

    @property
    def swa_end(self) -> float:
        """The last epoch of the fit, 0-based (inf without max_epochs)."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        return any(isinstance(m, _BatchNorm) for m in pl_module.modules())

    @staticmethod
    def avg_fn(averaged: torch.Tensor, parameter: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        """The running mean: the average of `num_averaged` values, and one more."""
        return averaged + (parameter - averaged) / (num_averaged + 1)

    # --- the fit --------------------------------------------------------------------------------------

    def on_fit_start(self, trainer, pl_module) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"StochasticWeightAveraging works with one optimizer; configure_optimizers returned "
                             f"{len(trainer.optimizers)}.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise ValueError(f"StochasticWeightAveraging replaces one learning-rate scheduler; configure_optimizers "
                             f"returned {len(trainer.lr_scheduler_configs)}.")
        if isinstance(self._swa_epoch_start, float):
            if trainer.max_epochs == -1:
                raise ValueError(f"StochasticWeightAveraging(swa_epoch_start={self._swa_epoch_start}) is a fraction "
                                 "of max_epochs, and the Trainer has none (max_epochs=-1). Give the epoch as an int.")
            self._swa_epoch_start = int(trainer.max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        if self._model_contains_batch_norm and not pl_module.automatic_optimization:
            raise ValueError("StochasticWeightAveraging recomputes batch-norm statistics by running training_step "
                             "without training, which manual optimization (automatic_optimization = False) cannot "
                             "promise: its training_step steps the optimizers itself. Recompute them yourself "
                             "with torch.optim.swa_utils.update_bn(loader, model) after fit.")
        self._max_epochs = trainer.max_epochs
        if self._average_model is None:
            self._average_model = _copy_without_trainer(pl_module)
        if self._pending_average is not None:
            self._average_model.load_state_dict(self._pending_average)
            self._pending_average = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # before the schedulers' states are loaded: a checkpoint written in the SWA phase holds SWALR's state
        # in place of the model's scheduler, so SWALR must be there to receive it
        saved = checkpoint.get("callbacks", {}).get(self.state_key)
        if saved and saved.get("scheduler_state") is not None and self._swa_scheduler is None:
            self._scheduler_state = saved["scheduler_state"]
            self._start_swa_scheduler(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if self._swa_scheduler is None and self.swa_start <= epoch <= self.swa_end:
            if self._scheduler_state is None and epoch != self.swa_start:
                log.warning("StochasticWeightAveraging starts at epoch %d, after its start (%d), with no state "
                            "from a checkpoint: the average begins here.", epoch, self.swa_start)
            self._start_swa_scheduler(trainer)
        if self.n_averaged is None and self._swa_scheduler is not None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            self._average_model = self._average_model.to(self._device or pl_module.device)
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch

    def _start_swa_scheduler(self, trainer) -> None:
        optimizer = trainer.optimizers[0]
        lrs = self._swa_lrs if isinstance(self._swa_lrs, list) else [self._swa_lrs] * len(optimizer.param_groups)
        if len(lrs) != len(optimizer.param_groups):
            raise ValueError(f"StochasticWeightAveraging(swa_lrs={self._swa_lrs}) gives {len(lrs)} learning rates "
                             f"and the optimizer has {len(optimizer.param_groups)} parameter groups; give one "
                             "float, or one per group.")
        for lr, group in zip(lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        # Lightning's choice, kept so that the two anneal alike: the cosine schedule starts from max_epochs
        start = trainer.max_epochs if self._annealing_strategy == "cos" else -1
        self._swa_scheduler = SWALR(optimizer, swa_lr=lrs, anneal_epochs=self._annealing_epochs,
                                    anneal_strategy=self._annealing_strategy, last_epoch=start)
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        config = LRSchedulerConfig(self._swa_scheduler)
        configs = trainer.lr_scheduler_configs
        if configs:
            replaced = configs[0]
            if replaced.interval != "epoch" or replaced.frequency != 1:
                log.warning("StochasticWeightAveraging steps its scheduler every epoch; the one it replaces, %s, "
                            "stepped every %d %s(s).", type(replaced.scheduler).__name__, replaced.frequency,
                            replaced.interval)
            log.info("Swapping scheduler `%s` for `SWALR`", type(replaced.scheduler).__name__)
            configs[0] = config
        else:
            configs.append(config)

    def on_train_end(self, trainer, pl_module) -> None:
        reached_end = self._max_epochs == -1 or trainer.current_epoch - 1 == self.swa_end
        if self._average_model is None or self.n_averaged is None or not reached_end:
            return
        self.transfer_weights(self._average_model, pl_module)
        if self._model_contains_batch_norm:
            self.reset_batch_norm_and_save_state(pl_module)
            _forward_over_training_data(trainer, pl_module)
            self.reset_momenta()

    # --- the pieces ----------------------------------------------------------------------------------

    @staticmethod
    def update_parameters(average_model: nn.Module, model: nn.Module, n_averaged: torch.Tensor,
                          avg_fn: AverageFn) -> None:
        """Add `model`'s parameters to the average in `average_model` (`n_averaged` counts them, in place)."""
        for averaged, param in zip(average_model.parameters(), model.parameters()):
            target = averaged.detach()
            value = param.detach().to(target.device)
            target.copy_(value if n_averaged == 0 else avg_fn(target, value, n_averaged.to(target.device)))
        n_averaged += 1

    @staticmethod
    def transfer_weights(src: nn.Module, dst: nn.Module) -> None:
        for source, target in zip(src.parameters(), dst.parameters()):
            target.detach().copy_(source.to(target.device))

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Zero the batch norms' statistics and make them a plain mean (momentum None) for the pass."""
        self.momenta = {}
        for module in pl_module.modules():
            if isinstance(module, _BatchNorm) and module.running_mean is not None:
                module.running_mean = torch.zeros_like(module.running_mean)
                module.running_var = torch.ones_like(module.running_var)
                self.momenta[module] = module.momentum
                module.momentum = None
                module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        for module, momentum in self.momenta.items():
            module.momentum = momentum

    # --- checkpoint ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = int(state_dict["n_averaged"])
        self._latest_update_epoch = int(state_dict["latest_update_epoch"])
        self._scheduler_state = state_dict["scheduler_state"]
        if self._swa_scheduler is not None and self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        average = state_dict.get("average_model_state")
        if average is not None:
            if self._average_model is not None:
                self._average_model.load_state_dict(average)
            else:
                self._pending_average = average  # the copy of the model is made when fit starts


def _copy_without_trainer(model: nn.Module) -> nn.Module:
    """A deep copy of the model's layers and weights, not of the Trainer it is attached to."""
    trainer = getattr(model, "_trainer", None)
    model.trainer = None
    try:
        return copy.deepcopy(model)
    finally:
        model.trainer = trainer


def _forward_over_training_data(trainer, model) -> None:
    """One pass of `training_step` over the training batches, gradients off, `self.log` ignored: the batch
    norms see every batch and average their statistics."""
    was_training = model.training
    model.train()
    model.log = _ignore  # what training_step logs in this pass is not a result of the fit
    model.log_dict = _ignore
    try:
        with torch.no_grad():
            for batch_idx, batch in enumerate(trainer.train_dataloader):
                if batch_idx >= trainer.num_training_batches:
                    break
                batch = model.on_before_batch_transfer(batch, 0)
                batch = model.transfer_batch_to_device(batch, model.device, 0)
                batch = model.on_after_batch_transfer(batch, 0)
                model.training_step(batch, batch_idx)
    finally:
        del model.log, model.log_dict
        model.train(was_training)


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


__all__ = ["StochasticWeightAveraging"]
