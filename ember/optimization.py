"""Optimization: backward, the optimizer step, step counting, clipping and schedulers.

One object per fit does these for automatic optimization (the Trainer calls `training_step` and
`optimizer_step`) and for manual optimization (`self.manual_backward` and `opt.step()` in the user's
`training_step` come here too), so a global step is counted, and the hooks around a step are called,
in one place.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

import torch

from ember.optimizers import LRSchedulerConfig, ManualOptimizer, parse_optimizers
from ember.state import FitState

log = logging.getLogger("ember")

if TYPE_CHECKING:
    from ember.callbacks.base import CallbackList
    from ember.logs import LogCollector
    from ember.module import Module
    from ember.precision import Precision


class Optimization:
    """The optimizers of a run and everything that happens between a loss and the next step.

    Args:
        trainer: passed to the callbacks' hooks.
        callbacks, logs, precision, state: the run's callback list, log collector, precision and loop state.
    """

    def __init__(self, trainer: Any, callbacks: "CallbackList", logs: "LogCollector", precision: "Precision",
                 state: FitState):
        self.trainer, self.callbacks, self.logs, self.precision, self.state = (trainer, callbacks, logs,
                                                                               precision, state)
        self.model: Module = trainer.lightning_module
        self.strategy = trainer.strategy
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self.manual_optimizers: list[ManualOptimizer] = []
        self.clip_each_step = False
        self.flush_due = False  # the last step ended on a log_every_n_steps boundary
        self._warned_no_step = False

    def configure(self) -> None:
        """Call `configure_optimizers` and check what it returned against the Trainer's arguments."""
        model, trainer = self.model, self.trainer
        self.optimizers, self.lr_scheduler_configs = parse_optimizers(model.configure_optimizers(),
                                                                      type(model).__name__)
        if model.automatic_optimization and len(self.optimizers) > 1:
            raise ValueError(
                f"{type(model).__name__}.configure_optimizers returned {len(self.optimizers)} optimizers; "
                "automatic optimization steps one. Set `self.automatic_optimization = False` in __init__ "
                "and step them in training_step with self.optimizers() and self.manual_backward(loss).")
        if trainer.gradient_clip_val and not model.automatic_optimization:
            raise ValueError("Trainer(gradient_clip_val=...) clips in automatic optimization only; with "
                             "manual optimization call self.clip_gradients(opt, gradient_clip_val=...) "
                             "in training_step.")
        self.manual_optimizers = [ManualOptimizer(o, self) for o in self.optimizers]
        from ember.module import Module

        overridden = type(model).configure_gradient_clipping is not Module.configure_gradient_clipping
        self.clip_each_step = bool(trainer.gradient_clip_val) or overridden

    def training_step(self, batch: Any, batch_idx: int, window_ends: bool) -> Any:
        """Automatic optimization of one batch: training_step, backward, and a step if the window ends."""
        strategy = self.strategy
        # inside an accumulation window, several processes reduce gradients only on its last batch
        with strategy.no_sync() if not window_ends else _NO_CONTEXT:
            return self._training_step(batch, batch_idx, window_ends)

    def _training_step(self, batch: Any, batch_idx: int, window_ends: bool) -> Any:
        model, trainer = self.model, self.trainer
        with self.logs.in_hook("training_step"), self.precision.forward_context():
            outputs = self.strategy.training_step(model, batch, batch_idx)
        loss = check_step_output(outputs, manual=False)
        if loss is None:  # the user skipped this batch
            return outputs
        if trainer.detect_anomaly and not torch.isfinite(loss):  # note: a sync point, only with detect_anomaly
            raise FloatingPointError(
                f"training_step returned a loss of {loss.item()} at epoch {self.state.epoch}, batch "
                f"{batch_idx} (global step {self.state.global_step}); detect_anomaly=True stops here. Check "
                "the learning rate, the inputs of this batch, and log/exp/division in the loss.")
        accumulate = trainer.accumulate_grad_batches
        if accumulate > 1:
            loss = loss / accumulate
        self.backward(loss)
        if window_ends:
            self.optimizer_step(self.optimizers[0])
        return outputs

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        model, trainer, callbacks = self.model, self.trainer, self.callbacks
        with self.logs.in_hook("on_before_backward"):
            callbacks.on_before_backward(trainer, model, loss)
            model.on_before_backward(loss)
        self.precision.backward(loss, *args, **kwargs)
        with self.logs.in_hook("on_after_backward"):
            callbacks.on_after_backward(trainer, model)
            model.on_after_backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> None:
        """Automatic optimization's step: unscale, hooks, clip, step, zero_grad, count, step schedulers."""
        model, trainer, callbacks = self.model, self.trainer, self.callbacks
        self._before_step(optimizer)
        if self.clip_each_step:
            model.configure_gradient_clipping(optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm)
        self.precision.step(optimizer, closure)
        with self.logs.in_hook("on_before_zero_grad"):
            callbacks.on_before_zero_grad(trainer, model, optimizer)
            model.on_before_zero_grad(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self.count_step()
        self.step_schedulers("step")

    def manual_step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> None:
        """`opt.step()` in manual optimization: the user zeroes gradients and steps schedulers."""
        self._before_step(optimizer)
        self.precision.step(optimizer, closure)
        self.count_step()

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        model = self.model
        self.precision.unscale(optimizer)
        with self.logs.in_hook("on_before_optimizer_step"):
            self.callbacks.on_before_optimizer_step(self.trainer, model, optimizer)
            model.on_before_optimizer_step(optimizer)

    def count_step(self) -> None:
        """One optimizer step was taken."""
        state = self.state
        state.global_step += 1
        state.stepped = True
        self.flush_due = state.global_step % self.trainer.log_every_n_steps == 0

    def warn_if_no_step(self, steps_before: int) -> None:
        """At an epoch's end: say once if it took no optimizer step (training_step returned None throughout)."""
        state = self.state
        if (state.global_step == steps_before and state.batches_done > 0 and not self._warned_no_step
                and self.model.automatic_optimization):
            self._warned_no_step = True
            log.warning("Epoch %d ended without an optimizer step: training_step returned None for every batch "
                        "(a None return skips the batch). Return the loss to train.", state.epoch)

    def holds_gradients(self) -> bool:
        """Whether some parameter has a gradient that no step has used yet (an open accumulation window)."""
        return any(p.grad is not None for o in self.optimizers for g in o.param_groups for p in g["params"])

    def step_schedulers(self, interval: str) -> None:
        """Step the schedulers of this interval ('step' or 'epoch') whose frequency is due. In manual
        optimization the user steps them (Lightning's rule)."""
        state = self.state
        if not self.model.automatic_optimization:
            return
        for config in self.lr_scheduler_configs:
            if config.interval != interval:
                continue
            count = state.global_step if interval == "step" else state.epoch + 1
            if count % config.frequency != 0:
                continue
            if config.reduce_on_plateau:
                value = self.trainer.callback_metrics.get(config.monitor)
                if value is None:
                    if config.strict:
                        raise ValueError(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged. Logged keys: "
                            f"{sorted(self.trainer.callback_metrics)}. Set 'monitor' in the lr_scheduler dict "
                            "to one of them, or 'strict': False to skip steps without it.")
                    continue
                config.scheduler.step(value)
            else:
                config.scheduler.step()

    # --- checkpoint parts ---------------------------------------------------------------------------

    def gradients_state(self) -> dict[str, torch.Tensor]:
        """Gradients not yet used by a step (inside an accumulation window), by parameter name."""
        return {name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None}

    def load_gradients_state(self, grads: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for name, grad in grads.items():
            params[name].grad = grad.to(device=params[name].device, dtype=params[name].dtype)


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_CONTEXT = _NoContext()


def check_step_output(output: Any, manual: bool) -> torch.Tensor | None:
    """The loss in what training_step returned, or a clear error."""
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        loss = output
    elif isinstance(output, Mapping):
        if "loss" not in output:
            if manual:
                return None
            raise ValueError(f"training_step returned a dict without a 'loss' key (keys: {sorted(output)}). "
                             "Return the loss tensor, or a dict with 'loss'.")
        loss = output["loss"]
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"training_step returned {{'loss': {type(loss).__name__}}}; the loss must be a tensor.")
    else:
        raise TypeError(
            f"training_step returned a {type(output).__name__}; expected the loss as a tensor, a dict with a "
            "'loss' tensor, or None to skip the batch.")
    if manual:
        return loss
    if loss.numel() != 1:
        raise ValueError(f"training_step returned a loss of shape {tuple(loss.shape)}; it must be a scalar "
                         "(reduce it with .mean() or .sum()).")
    if not loss.requires_grad:
        raise ValueError("training_step returned a loss that does not require grad: it was computed without "
                         "any trainable parameter (frozen model, .detach(), or torch.no_grad()).")
    return loss


__all__ = ["Optimization", "check_step_output"]
