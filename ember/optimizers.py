"""What `configure_optimizers` may return, turned into optimizers and scheduler configs; and the
view of an optimizer that the Module steps (`self.optimizers()`, an overridden `optimizer_step`).

`configure_optimizers` may return (Lightning's forms):

- an optimizer, or a list of them;
- `(optimizers, schedulers)`, two lists;
- a dict `{"optimizer": opt, "lr_scheduler": scheduler or {...}, "monitor": key}`, or a list of such dicts,
  where the scheduler dict has `scheduler`, `interval` ('epoch' or 'step'), `frequency`, `monitor`
  (for ReduceLROnPlateau), `strict` and `name`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

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


class _SteppedByEmber:
    """The part of an optimizer view that differs from the optimizer: `step` goes through ember."""

    optimizer: torch.optim.Optimizer  # the optimizer seen (a class attribute of each view's own class)
    _ember_step: Any
    _ember_module: Any

    # a property, i.e. a data descriptor, so that it wins over a `step` set on the optimizer itself (torch's
    # LR schedulers wrap `optimizer.step` on the instance, and the view shares the instance's attributes)
    @property
    def step(self) -> Any:
        return self._ember_step

    @contextmanager
    def toggle_model(self) -> Iterator[None]:
        """`with opt.toggle_model():` only this optimizer's parameters require grad inside the block
        (`Module.toggle_optimizer` / `untoggle_optimizer` around it)."""
        module = self._ember_module
        module.toggle_optimizer(self)
        try:
            yield
        finally:
            module.untoggle_optimizer(self)


def unwrapped(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer itself, given it or its view (the grad scaler keeps its state per optimizer object)."""
    return optimizer.optimizer if isinstance(optimizer, _SteppedByEmber) else optimizer


def optimizer_view(optimizer: torch.optim.Optimizer, step: Any, module: Any) -> torch.optim.Optimizer:
    """The optimizer as `self.optimizers()` returns it, and as an overridden `optimizer_step` receives it.

    The view is an instance of a subclass of the optimizer's own class, created here, that shares the
    optimizer's attribute dict: `param_groups`, `state`, `defaults` and its hooks are the same objects (a
    learning rate set through the view is the optimizer's; `load_state_dict` on either is seen by both),
    and `isinstance(view, torch.optim.Optimizer)` holds, as it does for the optimizer. Only `step` differs:
    it is `step(closure=None)`, which counts the global step and calls the step hooks, with grad scaling.

    Args:
        optimizer: what configure_optimizers returned.
        step: `step(closure=None)` of the view.
        module: the Module (for `toggle_model`).
    """
    cls = type(optimizer)
    view_class = type(cls.__name__, (_SteppedByEmber, cls), {
        "__module__": cls.__module__, "__qualname__": cls.__qualname__, "optimizer": optimizer,
        "_ember_step": staticmethod(step), "_ember_module": module})
    view = object.__new__(view_class)  # no __init__: the view holds no state of its own
    view.__dict__ = optimizer.__dict__
    return view


class ManualOptimizationMixin:
    """The Module's access to its optimizers and schedulers during a fit (a part of `Module`, kept here
    next to the optimizer views): `self.optimizers()`, `self.lr_schedulers()`, and the toggling of the
    parameters that require grad, for manual optimization with several optimizers (GANs)."""

    _toggled_requires_grad: dict[torch.nn.Parameter, bool] | None

    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from `configure_optimizers`; in manual optimization, call `.step()` on them.

        Each is a view of the optimizer (`isinstance(opt, torch.optim.Optimizer)` holds, and it shares the
        optimizer's param_groups and state) whose `step()` counts the global step and calls the step hooks;
        `use_pl_optimizer=False` gives the optimizers themselves.
        """
        optimization = self.trainer.optimization
        optimizers = optimization.views if use_pl_optimizer else optimization.optimizers
        return optimizers[0] if len(optimizers) == 1 else list(optimizers)

    def lr_schedulers(self) -> Any:
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def toggle_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Only `optimizer`'s parameters require grad until `untoggle_optimizer`: the parameters of the
        other optimizers are set to `requires_grad=False` (their flags are recorded and put back), so a GAN's
        generator step leaves no gradients on the discriminator.

        Example:
            >>> opt_g, opt_d = self.optimizers()
            >>> self.toggle_optimizer(opt_g)
            >>> self.manual_backward(generator_loss)
            >>> opt_g.step(); opt_g.zero_grad()
            >>> self.untoggle_optimizer(opt_g)
        """
        recorded: dict[torch.nn.Parameter, bool] = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if param not in recorded:
                        recorded[param] = param.requires_grad
                        param.requires_grad = False
        for group in optimizer.param_groups:  # the view shares the optimizer's param_groups
            for param in group["params"]:
                param.requires_grad = recorded[param]
        self._toggled_requires_grad = recorded

    def untoggle_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Put back the `requires_grad` flags that `toggle_optimizer(optimizer)` set to False (a no-op
        without a toggle before it)."""
        recorded = self._toggled_requires_grad or {}
        own = {param for group in optimizer.param_groups for param in group["params"]}
        for param, requires_grad in recorded.items():
            if param not in own:  # what the block changed on the toggled optimizer's own parameters stays
                param.requires_grad = requires_grad
        self._toggled_requires_grad = None

    @contextmanager
    def toggled_optimizer(self, optimizer: torch.optim.Optimizer) -> Iterator[None]:
        """`toggle_optimizer` for the block, `untoggle_optimizer` after it."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)


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
