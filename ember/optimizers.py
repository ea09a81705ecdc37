"""What `configure_optimizers` may return, turned into optimizers and scheduler configs; and the
optimizer that manual optimization steps.

`configure_optimizers` may return (Lightning's forms):

- an optimizer, or a list of them;
- `(optimizers, schedulers)`, two lists;
- a dict `{"optimizer": opt, "lr_scheduler": scheduler or {...}, "monitor": key}`, or a list of such dicts,
  where the scheduler dict has `scheduler`, `interval` ('epoch' or 'step'), `frequency`, `monitor`
  (for ReduceLROnPlateau), `strict` and `name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch


@dataclass
class LRSchedulerConfig:
    """One learning-rate scheduler and when it steps (Lightning's dict keys)."""

    scheduler: Any
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None
    strict: bool = True
    name: str | None = None

    @property
    def reduce_on_plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)



class ManualOptimizer:
    """What `self.optimizers()` returns in manual optimization: a torch Optimizer's interface whose
    `.step()` goes through the precision (grad scaling), the step hooks, and counts a global step."""

    def __init__(self, optimizer: torch.optim.Optimizer, optimization: Any):
        self.optimizer, self._optimization = optimizer, optimization

    def step(self, closure: Any = None) -> None:
        self._optimization.manual_step(self.optimizer, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def parse_optimizers(result: Any, model_name: str) -> tuple[list[torch.optim.Optimizer], list[LRSchedulerConfig]]:
    """Turn what configure_optimizers returned into (optimizers, scheduler configs)."""
    expected = ("an optimizer, a list of optimizers, (optimizers, schedulers), or a dict {'optimizer': ..., "
                "'lr_scheduler': scheduler or {'scheduler': ..., 'interval': 'step'|'epoch', 'frequency': n, "
                "'monitor': key}}")
    if isinstance(result, torch.optim.Optimizer):
        return [result], []
    if isinstance(result, Mapping):
        return _parse_optimizer_dict(result, model_name, expected)
    if isinstance(result, (list, tuple)):
        if len(result) == 2 and isinstance(result[0], (list, tuple)):
            optimizers = list(result[0])
            schedulers = [_scheduler_config(s, model_name) for s in (result[1] if isinstance(result[1], (list, tuple)) else [result[1]])]
        elif result and all(isinstance(r, Mapping) for r in result):
            optimizers, schedulers = [], []
            for item in result:
                opts, scheds = _parse_optimizer_dict(item, model_name, expected)
                optimizers += opts
                schedulers += scheds
        else:
            optimizers, schedulers = list(result), []
        bad = [type(o).__name__ for o in optimizers if not isinstance(o, torch.optim.Optimizer)]
        if bad or not optimizers:
            raise TypeError(f"{model_name}.configure_optimizers returned a list with {bad or 'nothing'}; expected "
                            f"{expected}.")
        return optimizers, schedulers
    raise TypeError(f"{model_name}.configure_optimizers returned {type(result).__name__}; expected {expected}.")


def _parse_optimizer_dict(result: Mapping, model_name: str, expected: str):
    unknown = set(result) - {"optimizer", "lr_scheduler", "monitor", "frequency"}
    if "optimizer" not in result or unknown:
        raise TypeError(f"{model_name}.configure_optimizers returned a dict with keys {sorted(result)}; expected "
                        f"{expected}.")
    optimizer = result["optimizer"]
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{model_name}.configure_optimizers: 'optimizer' is a {type(optimizer).__name__}, not a "
                        "torch.optim.Optimizer.")
    schedulers = []
    if result.get("lr_scheduler") is not None:
        config = _scheduler_config(result["lr_scheduler"], model_name)
        if config.monitor is None:
            config.monitor = result.get("monitor")
        schedulers.append(config)
    return [optimizer], schedulers


def _scheduler_config(item: Any, model_name: str) -> LRSchedulerConfig:
    if isinstance(item, Mapping):
        unknown = set(item) - {"scheduler", "interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau"}
        if "scheduler" not in item or unknown:
            raise TypeError(f"{model_name}.configure_optimizers: the lr_scheduler dict has keys {sorted(item)}; "
                            "expected 'scheduler' and optionally 'interval', 'frequency', 'monitor', 'strict', "
                            "'name'.")
        config = LRSchedulerConfig(item["scheduler"], item.get("interval", "epoch"), item.get("frequency", 1),
                                   item.get("monitor"), item.get("strict", True), item.get("name"))
    else:
        config = LRSchedulerConfig(item)
    if config.interval not in ("step", "epoch"):
        raise ValueError(f"lr_scheduler interval={config.interval!r}; expected 'step' or 'epoch'.")
    if not hasattr(config.scheduler, "step") or not hasattr(config.scheduler, "state_dict"):
        raise TypeError(f"{model_name}.configure_optimizers: {type(config.scheduler).__name__} is not a learning "
                        "rate scheduler (it needs step() and state_dict()).")
    if config.reduce_on_plateau and config.monitor is None:
        raise ValueError(f"{model_name}.configure_optimizers returned ReduceLROnPlateau without a monitor; return "
                         "{'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'monitor': 'val_loss'}}.")
    return config
