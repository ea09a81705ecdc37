"""Optimization: backward, the optimizer step, step counting, clipping and schedulers.

One object per fit does these for automatic optimization (the Trainer calls `training_step` and
`optimizer_step`) and for manual optimization (`self.manual_backward` and `opt.step()` in the user's
`training_step` come here too), so a global step is counted, and the hooks around a step are called,
in one place.

Which of the Module's optimization hooks are overridden (`optimizer_step`, `optimizer_zero_grad`,
`backward`, `lr_scheduler_step`) is read once, in `configure`. With none of them overridden a batch
runs `training_step`, backward and the step directly; an overridden `optimizer_step` (or an optimizer
that needs a closure, such as LBFGS) gets Lightning's contract instead: on the batch that ends an
accumulation window it is called with a closure that runs `training_step`, `zero_grad` and backward.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ember.optimizers import LRSchedulerConfig, optimizer_view, parse_optimizers, unwrapped
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
        self.views: list[torch.optim.Optimizer] = []  # what self.optimizers() returns
        self.clip_each_step = False
        self.flush_due = False  # the last step ended on a log_every_n_steps boundary
        # gradients of an accumulation window that no step has used yet (automatic optimization)
        self.pending_gradients = False
        self.call_training_step: Callable[..., Any] = self.model.training_step  # see configure
        self._custom_step = self._custom_zero_grad = self._custom_backward = self._custom_scheduler_step = False
        self._closure_step = False  # the window's last batch runs inside a closure given to the step
        self._in_optimizer_step = False  # the Module's optimizer_step is running
        self._warned_no_step = False
        self.active_hooks: frozenset[str] = frozenset(PER_STEP_HOOKS)  # see configure
        self._plain = False

    def configure(self) -> None:
        """Call `configure_optimizers`, check what it returned against the Trainer's arguments, and read
        which optimization hooks the Module overrides."""
        from ember.module import Module, accepts, defines, overrides

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
        if not model.automatic_optimization and trainer.accumulate_grad_batches > 1:
            raise ValueError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) accumulates in automatic "
                "optimization only; with manual optimization step the optimizer every N batches in "
                "training_step yourself, and leave accumulate_grad_batches at 1.")
        self._custom_step = overrides(model, Module, "optimizer_step")
        self._custom_zero_grad = overrides(model, Module, "optimizer_zero_grad")
        self._custom_backward = overrides(model, Module, "backward")
        self._custom_scheduler_step = overrides(model, Module, "lr_scheduler_step")
        self._closure_step = model.automatic_optimization and (
            self._custom_step or any(isinstance(o, torch.optim.LBFGS) for o in self.optimizers))
        self.clip_each_step = bool(trainer.gradient_clip_val) or overrides(model, Module,
                                                                           "configure_gradient_clipping")
        # training_step through the strategy (DDP wraps it), called (batch, batch_idx) or, for
        # `def training_step(self, batch)`, (batch): bound now, so a step pays no extra call for the choice
        from ember.strategies.single import Strategy

        if type(self.strategy).training_step is Strategy.training_step:
            through_strategy = model.training_step  # one process: nothing wraps it
        else:
            through_strategy = functools.partial(self.strategy.training_step, model)
        if accepts(model.training_step, "batch_idx", 2):
            self.call_training_step = through_strategy
        else:
            self.call_training_step = lambda batch, batch_idx: through_strategy(batch)
        # The per-step hooks someone implements (a callback or the Module); the others are not called, so
        # a run that uses none of them pays nothing for them. Read once per fit, as the callback list is.
        self.active_hooks = frozenset(
            name for name in PER_STEP_HOOKS if self.callbacks.has(name) or defines(model, name))
        precision = self.precision
        self._plain = precision.scaler is None and not precision.autocasts  # no scaling, no autocast
        self.make_views()

    def make_views(self) -> None:
        """The views of the optimizers that `self.optimizers()` returns (again when they are replaced)."""
        make_step = self._manual_step_of if not self.model.automatic_optimization else self._automatic_step_of
        self.views = [optimizer_view(o, make_step(o), self.model) for o in self.optimizers]

    # --- automatic optimization ----------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int, window_ends: bool) -> Any:
        """Automatic optimization of one batch: training_step, zero_grad at a window's first batch,
        backward, and a step if the window ends."""
        if not window_ends:
            # inside an accumulation window, several processes reduce gradients only on its last batch
            with self.strategy.no_sync():
                outputs, _ = self._forward_backward(batch, batch_idx)
        elif self._closure_step:
            outputs = self._step_with_closure(batch, batch_idx)
        else:
            outputs, loss = self._forward_backward(batch, batch_idx)
            if loss is not None:
                self.optimizer_step(self.optimizers[0])
        if self.lr_scheduler_configs and batch_idx + 1 == self.trainer.num_training_batches:
            # Lightning steps the epoch-interval schedulers with the epoch's last batch, so the validation and
            # the hooks of the epoch's end see the new rate; ReduceLROnPlateau waits for the epoch's values
            self.step_schedulers("epoch", plateau=False)
        return outputs

    def _forward_backward(self, batch: Any, batch_idx: int) -> tuple[Any, torch.Tensor | None]:
        """training_step, then (Lightning's order) zero_grad on a window's first batch, then backward.
        Returns the outputs and the loss that went backward (None when the user skipped the batch)."""
        logs = self.logs
        previous, logs.hook = logs.hook, "training_step"  # (what `with logs.in_hook(...)` does, inline)
        try:
            if self._plain:
                outputs = self.call_training_step(batch, batch_idx)
            else:
                with self.precision.forward_context():
                    outputs = self.call_training_step(batch, batch_idx)
        finally:
            logs.hook = previous
        loss = check_step_output(outputs, manual=False)
        accumulate = self.trainer.accumulate_grad_batches  # read each batch: a callback may schedule it
        if batch_idx % accumulate == 0:
            self.zero_grad(batch_idx)
        if loss is None:  # the user skipped this batch
            return outputs, None
        if self.trainer.detect_anomaly and not torch.isfinite(loss):  # note: a sync point, only with detect_anomaly
            raise FloatingPointError(
                f"training_step returned a loss of {loss.item()} at epoch {self.state.epoch}, batch "
                f"{batch_idx} (global step {self.state.global_step}); detect_anomaly=True stops here. Check "
                "the learning rate, the inputs of this batch, and log/exp/division in the loss.")
        if accumulate > 1:
            loss = loss / accumulate
        self.backward(loss)
        self.pending_gradients = True
        return outputs, loss

    def _step_with_closure(self, batch: Any, batch_idx: int) -> Any:
        """The window's last batch: the step is given a closure that runs training_step and backward."""
        results: list[Any] = []

        def optimizer_closure() -> torch.Tensor | None:
            outputs, loss = self._forward_backward(batch, batch_idx)
            results.append(outputs)
            return None if loss is None else loss.detach()

        self.finish_window(batch_idx, optimizer_closure)
        if not results:
            raise RuntimeError(
                f"{type(self.model).__name__}.optimizer_step returned without running the closure it was given, "
                "so training_step and backward never ran for this batch. Call "
                "`optimizer.step(closure=optimizer_closure)` (or `optimizer_closure()`) in optimizer_step.")
        return results[-1]

    def finish_window(self, batch_idx: int, closure: Callable[[], Any] | None = None) -> None:
        """End the accumulation window with a step: through the Module's `optimizer_step` when it is
        overridden (with `closure`, or one that returns None when backward has already run), else directly."""
        optimizer = self.optimizers[0]
        if self._custom_step:
            self._in_optimizer_step = True
            try:
                self.model.optimizer_step(self.state.epoch, batch_idx, self.views[0], closure or _ran_already)
            finally:
                self._in_optimizer_step = False
            self.count_step()
            self.step_schedulers("step")
        elif closure is not None:
            self._step(optimizer, closure, clip=True)
            self.count_step()
            self.step_schedulers("step")
        else:
            self.optimizer_step(optimizer)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The step after backward, when nothing asks for a closure: unscale, hooks, clip, step, count,
        step-interval schedulers."""
        if not self._plain:
            self._before_step(optimizer, clip=True)
            self.precision.step(optimizer)
        else:
            if self.clip_each_step or "on_before_optimizer_step" in self.active_hooks:
                self._before_step(optimizer, clip=True)
            optimizer.step()
        self.count_step()
        if self.lr_scheduler_configs:
            self.step_schedulers("step")

    def zero_grad(self, batch_idx: int) -> None:
        optimizer, model = self.optimizers[0], self.model
        if "on_before_zero_grad" in self.active_hooks:
            with self.logs.in_hook("on_before_zero_grad"):
                self.callbacks.on_before_zero_grad(self.trainer, model, optimizer)
                model.on_before_zero_grad(optimizer)
        if self._custom_zero_grad:
            model.optimizer_zero_grad(self.state.epoch, batch_idx, optimizer)
        else:
            optimizer.zero_grad(set_to_none=True)
        self.pending_gradients = False  # what an earlier window left (a skipped last batch) is dropped

    def _automatic_step_of(self, optimizer: torch.optim.Optimizer) -> Callable[..., Any]:
        def step(closure: Callable[[], Any] | None = None) -> Any:
            """`optimizer.step(closure=optimizer_closure)` inside the Module's optimizer_step."""
            if not self._in_optimizer_step:
                raise RuntimeError(
                    "optimizer.step() was called outside optimizer_step while automatic optimization is on; "
                    "the Trainer steps the optimizer itself. Override optimizer_step(epoch, batch_idx, optimizer, "
                    "optimizer_closure) to change how it steps, or set `self.automatic_optimization = False`.")
            return self._step(optimizer, closure, clip=True)

        return step

    def window_open(self) -> bool:
        """Automatic optimization holds gradients of an accumulation window that no step has used yet."""
        return self.pending_gradients and self.model.automatic_optimization

    # --- both ----------------------------------------------------------------------------------------

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        model, trainer, callbacks, hooks = self.model, self.trainer, self.callbacks, self.active_hooks
        if "on_before_backward" in hooks:
            with self.logs.in_hook("on_before_backward"):
                callbacks.on_before_backward(trainer, model, loss)
                model.on_before_backward(loss)
        if self._custom_backward:
            model.backward(self.precision.scale(loss), *args, **kwargs)
        elif self._plain:
            loss.backward(*args, **kwargs)
        else:
            self.precision.backward(loss, *args, **kwargs)
        if "on_after_backward" in hooks:
            with self.logs.in_hook("on_after_backward"):
                callbacks.on_after_backward(trainer, model)
                model.on_after_backward()

    def _step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any] | None, clip: bool) -> Any:
        """Step `optimizer`; with a closure, the step hooks run after each call of it (when its backward
        has made the gradients), as Lightning does."""
        if closure is None:
            self._before_step(optimizer, clip)
            return self.precision.step(optimizer)

        def closure_then_hooks() -> Any:
            loss = closure()
            self._before_step(optimizer, clip)
            return loss

        return self.precision.step(optimizer, closure_then_hooks)

    def _before_step(self, optimizer: torch.optim.Optimizer, clip: bool) -> None:
        model = self.model
        self.precision.unscale(optimizer)
        if "on_before_optimizer_step" in self.active_hooks:
            with self.logs.in_hook("on_before_optimizer_step"):
                self.callbacks.on_before_optimizer_step(self.trainer, model, optimizer)
                model.on_before_optimizer_step(optimizer)
        if clip and self.clip_each_step:
            trainer = self.trainer
            model.configure_gradient_clipping(optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm)

    def clip_gradients(self, optimizer: torch.optim.Optimizer, value: float, algorithm: str) -> None:
        """Clip the gradients of `optimizer`'s parameters at their true scale (unscaled first under 16-mixed)."""
        self.precision.unscale(unwrapped(optimizer))
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, value)
        else:
            torch.nn.utils.clip_grad_value_(params, value)

    # --- manual optimization -------------------------------------------------------------------------

    def _manual_step_of(self, optimizer: torch.optim.Optimizer) -> Callable[..., Any]:
        def step(closure: Callable[[], Any] | None = None) -> Any:
            """`opt.step()` in manual optimization: the user zeroes gradients and steps schedulers."""
            result = self._step(optimizer, closure, clip=False)
            self.count_step()
            return result

        return step

    # --- counting and schedulers ---------------------------------------------------------------------

    def count_step(self) -> None:
        """One optimizer step was taken (it used the gradients of the window)."""
        state = self.state
        state.global_step += 1
        state.stepped = True
        self.pending_gradients = False
        self.flush_due = state.global_step % self.trainer.log_every_n_steps == 0

    def warn_if_no_step(self, steps_before: int) -> None:
        """At an epoch's end: say once if it took no optimizer step (training_step returned None throughout)."""
        state = self.state
        if (state.global_step == steps_before and state.batches_done > 0 and not self._warned_no_step
                and self.model.automatic_optimization):
            self._warned_no_step = True
            log.warning("Epoch %d ended without an optimizer step: training_step returned None for every batch "
                        "(a None return skips the batch). Return the loss to train.", state.epoch)

    def step_schedulers(self, interval: str, plateau: bool | None = None) -> None:
        """Step the schedulers of this interval ('step' or 'epoch') whose frequency is due, through the
        Module's `lr_scheduler_step` when it is overridden; `plateau`: only the ReduceLROnPlateau ones (True)
        or only the others (False). In manual optimization the user steps them (Lightning's rule)."""
        state = self.state
        if not self.model.automatic_optimization:
            return
        for config in self.lr_scheduler_configs:
            if config.interval != interval or (plateau is not None and config.reduce_on_plateau != plateau):
                continue
            count = state.global_step if interval == "step" else state.epoch + 1
            if count % config.frequency != 0:
                continue
            value = None
            if config.reduce_on_plateau:
                value = self.trainer.callback_metrics.get(config.monitor)
                if value is None:
                    if config.strict:
                        raise ValueError(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged. Logged keys: "
                            f"{sorted(self.trainer.callback_metrics)}. Set 'monitor' in the lr_scheduler dict "
                            "to one of them, or 'strict': False to skip steps without it.")
                    continue
            if self._custom_scheduler_step:
                self.model.lr_scheduler_step(config.scheduler, value)
            elif value is None:
                config.scheduler.step()
            else:
                config.scheduler.step(value)

    # --- checkpoint parts ---------------------------------------------------------------------------

    def gradients_state(self) -> dict[str, torch.Tensor]:
        """Gradients not yet used by a step (inside an accumulation window), by parameter name. In automatic
        optimization the gradients of the last step stay until the next window's zero_grad (Lightning's
        order); they are not saved, since that zero_grad drops them."""
        if self.model.automatic_optimization and not self.pending_gradients:
            return {}
        return {name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None}

    def load_gradients_state(self, grads: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for name, grad in grads.items():
            params[name].grad = grad.to(device=params[name].device, dtype=params[name].dtype)
        self.pending_gradients = bool(grads)


def _ran_already() -> None:
    """The closure given to an overridden optimizer_step when backward has already run: at the end of an
    epoch of unknown length, whose last batch was not known to be the last until the data ran out."""
    return None


# The hooks called around every training step; `Optimization.active_hooks` holds those someone implements.
PER_STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_zero_grad", "on_before_backward",
                  "on_after_backward", "on_before_optimizer_step")


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
