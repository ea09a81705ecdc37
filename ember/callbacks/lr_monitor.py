"""LearningRateMonitor: log each optimizer's learning rate to every logger."""

from __future__ import annotations

from typing import Any

import torch

from ember.callbacks.base import Callback


class LearningRateMonitor(Callback):
    """Log learning rates as `lr-<Optimizer>` (`lr-<Optimizer>/pg<i>` with several param groups).

    Args:
        logging_interval: 'step', 'epoch', or None to follow each scheduler's interval (epoch when an
            optimizer has no scheduler).
        log_momentum: also log `momentum` (or Adam's beta1) as `lr-<Optimizer>-momentum`.
        log_weight_decay: also log `weight_decay`.

    Example:
        >>> trainer = ember.Trainer(callbacks=[LearningRateMonitor(logging_interval="step")])
    """

    def __init__(self, logging_interval: str | None = None, log_momentum: bool = False,
                 log_weight_decay: bool = False):
        if logging_interval not in (None, "step", "epoch"):
            raise ValueError(f"LearningRateMonitor(logging_interval={logging_interval!r}): expected None, 'step' "
                             "or 'epoch'.")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.loggers:
            raise ValueError("LearningRateMonitor writes to the loggers, and this Trainer has none (logger=False). "
                             "Enable a logger or remove the callback.")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # Lightning's cadence: before the step that ends a log_every_n_steps period (or when stopping), at
        # the count of steps taken so far
        step = trainer._logged_steps()
        if self.logging_interval == "epoch" or ((step + 1) % trainer.log_every_n_steps and not trainer.should_stop):
            return
        self._log(trainer, "step")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch")

    def _log(self, trainer, interval: str) -> None:
        stats: dict[str, float] = {}
        scheduled = {id(c.scheduler.optimizer): c for c in trainer.lr_scheduler_configs
                     if hasattr(c.scheduler, "optimizer")}
        names: dict[str, int] = {}
        for optimizer in trainer.optimizers:
            config = scheduled.get(id(optimizer))
            own = config.interval if config is not None else "epoch"
            if self.logging_interval is None and own != interval:
                continue
            base = (config.name if config is not None and config.name else None) or \
                f"lr-{type(optimizer).__name__}"
            names[base] = names.get(base, -1) + 1
            if names[base]:
                base = f"{base}-{names[base]}"
            groups = optimizer.param_groups
            for i, group in enumerate(groups):
                key = base if len(groups) == 1 else f"{base}/pg{i + 1}"
                stats[key] = float(group["lr"])
                if self.log_momentum:
                    momentum = group.get("momentum", group.get("betas", (None,))[0])
                    if momentum is not None:
                        stats[f"{key}-momentum"] = float(momentum)
                if self.log_weight_decay and "weight_decay" in group:
                    stats[f"{key}-weight_decay"] = float(group["weight_decay"])
        if not stats:
            return
        for key, value in stats.items():
            self.lrs.setdefault(key, []).append(value)
        # callbacks may monitor the rates (as in Lightning, where they are in callback_metrics too)
        trainer.callback_metrics.update({key: torch.tensor(value, device=trainer.strategy.root_device)
                                         for key, value in stats.items()})
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer._logged_steps())

    def state_dict(self) -> dict[str, Any]:
        return {"lrs": {k: list(v) for k, v in self.lrs.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lrs = {k: list(v) for k, v in state["lrs"].items()}
