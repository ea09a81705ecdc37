"""The validation, test and predict loops: one pass over the dataloaders of a stage, hooks called by name.

The Trainer runs them for `validate` / `test` / `predict` and in the middle of `fit`; what they need of
the run (callbacks, the log collector, precision, batch transfer, the loggers) is passed in.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ember.seed import rng_states, set_rng_states

if TYPE_CHECKING:
    from ember.callbacks.base import CallbackList
    from ember.logs import LogCollector
    from ember.precision import Precision


@dataclass
class EvalContext:
    """What the evaluation and predict loops use of the run."""

    callbacks: "CallbackList"
    logs: "LogCollector"
    precision: "Precision"
    to_device: Callable[[Any, int], Any]
    send_to_loggers: Callable[..., None]
    hooks: Mapping[str, "EvalHooks"]  # per stage, made when the stage's dataloaders are connected


class EvalHooks:
    """The hooks of the validation, test or predict loop, looked up once when the stage's dataloaders are
    connected, with the step called as its signature asks (`validation_step(batch)` gets the batch alone;
    `dataloader_idx` is passed when there are several dataloaders, as in Lightning).

    Args:
        stage: 'validate', 'test' or 'predict'.
        callbacks: the run's callback list.
        model: the Module.
        loaders: how many dataloaders the stage has (the step's signature is checked only when it will run).
    """

    def __init__(self, stage: str, callbacks: "CallbackList", model: Any, loaders: int):
        from ember.module import Module, overrides

        word = {"validate": "validation", "test": "test", "predict": "predict"}[stage]
        self.names = {hook: f"on_{word}_{hook}" for hook in ("start", "epoch_start", "batch_start", "batch_end",
                                                              "epoch_end", "end")}
        self.names["step"] = "validation_step" if stage == "validate" else f"{word}_step"
        for hook, name in self.names.items():
            if hook != "step":
                setattr(self, hook, getattr(callbacks, name))
                setattr(self, f"model_{hook}", getattr(model, name))
        self.model_eval = getattr(model, f"on_{word}_model_eval")
        # at the end, the modes recorded at the start are put back, unless the Module overrides the hook
        train = f"on_{word}_model_train"
        self.model_train = getattr(model, train) if stage != "predict" and overrides(model, Module, train) else None
        self.step = step_call(model, self.names["step"], loaders > 1) if loaders else None


def step_call(model: Any, name: str, several: bool) -> Callable[..., Any] | None:
    """`model.<name>` as the loop calls it, `(batch, batch_idx, *dataloader_idx)`, adapted to a step that
    takes no batch_idx; None when the step is None (the loop is switched off). Checks the dataloader_idx
    argument against the number of dataloaders."""
    from ember.module import accepts

    step = getattr(model, name, None)
    if step is None:
        return None
    cls = type(model).__name__
    params = inspect.signature(step).parameters
    if several and not accepts(step, "dataloader_idx"):
        raise TypeError(f"There are several dataloaders, but {cls}.{name}() has no dataloader_idx argument to "
                        "tell them apart. Add it to the signature: "
                        f"def {name}(self, batch, batch_idx, dataloader_idx=0).")
    if not several and "dataloader_idx" in params and params["dataloader_idx"].default is inspect.Parameter.empty:
        raise TypeError(f"There is one dataloader, but {cls}.{name}() requires a dataloader_idx argument, which "
                        "is passed only with several. Give it a default: dataloader_idx=0.")
    if accepts(step, "batch_idx", min_args=2):
        return step
    return lambda batch, batch_idx, *dataloader_idx: step(batch, *dataloader_idx)


def _module_modes(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    return [(module, module.training) for module in model.modules()]


def _put_back(modes: list[tuple[torch.nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


def evaluation_loop(trainer: Any, stage: str, run: EvalContext) -> list[dict[str, float]]:
    """One pass over the validation or test dataloaders; returns the epoch metrics per dataloader."""
    model, logs = trainer.lightning_module, run.logs
    hooks = run.hooks[stage]
    names = hooks.names
    loaders = trainer._eval_loaders[stage]
    limits = trainer.num_val_batches if stage == "validate" else trainer.num_test_batches
    sanity = trainer.sanity_checking
    if sanity:
        limits = [min(n, trainer.num_sanity_val_steps if trainer.num_sanity_val_steps >= 0 else math.inf)
                  for n in limits]
    # the logger step of on_step values: validation batches counted across the fit, as Lightning counts them
    log_steps = trainer.fit_state.validation_log_steps if stage == "validate" and trainer.training else []
    log_steps.extend([0] * (len(loaders) - len(log_steps)))
    modes = _module_modes(model)
    hooks.model_eval()
    logs.use("eval")
    logs.reset_stage()
    with logs.in_hook(names["start"]):
        hooks.start(trainer, model)
        hooks.model_start()
    with logs.in_hook(names["epoch_start"]):
        hooks.epoch_start(trainer, model)
        hooks.model_epoch_start()
    several = len(loaders) > 1
    with torch.inference_mode() if trainer.inference_mode else torch.no_grad():
        for dataloader_idx, loader in enumerate(loaders):
            logs.dataloader_idx = dataloader_idx if several else None
            extra = (dataloader_idx,) if several else ()
            for batch_idx, batch in enumerate(loader):
                if batch_idx >= limits[dataloader_idx]:
                    break
                batch = run.to_device(batch, dataloader_idx)
                logs.start_batch(batch)
                with logs.in_hook(names["batch_start"]):
                    hooks.batch_start(trainer, model, batch, batch_idx, *extra)
                    hooks.model_batch_start(batch, batch_idx, *extra)
                with logs.in_hook(names["step"]), run.precision.forward_context():
                    outputs = hooks.step(batch, batch_idx, *extra)
                with logs.in_hook(names["batch_end"]):
                    hooks.batch_end(trainer, model, outputs, batch, batch_idx, *extra)
                    hooks.model_batch_end(outputs, batch, batch_idx, *extra)
                step_values = logs.pop_step_values(sync=False)
                if not sanity:
                    if step_values:  # the user logged with on_step=True: a logger row per batch
                        run.send_to_loggers(step_values, step=log_steps[dataloader_idx], eval_batch=True)
                    log_steps[dataloader_idx] += 1
        logs.dataloader_idx, logs.batch = None, None  # epoch hooks log outside any batch
        with logs.in_hook(names["epoch_end"]):
            hooks.epoch_end(trainer, model)
            hooks.model_epoch_end()
    metrics = logs.end_epoch()
    if not sanity:
        run.send_to_loggers(metrics)
    if stage == "validate" and trainer.training:
        # the validation is complete (metrics logged): a checkpoint written in on_validation_end resumes
        # after it instead of running it, and logging it, a second time
        trainer.fit_state.validated_at = trainer.fit_state.batches_done
    with logs.in_hook(names["end"]):
        hooks.end(trainer, model)
        hooks.model_end()
    if hooks.model_train is not None:
        hooks.model_train()
    else:
        _put_back(modes)
    return split_by_dataloader(metrics, len(loaders), logs.dataloader_of)


def sanity_check(trainer: Any, run: EvalContext) -> None:
    """A few validation batches before training, to fail early; it changes nothing the training draws or
    reports (RNG states put back, metrics forgotten)."""
    model, callbacks = trainer.lightning_module, run.callbacks
    rng = rng_states()
    trainer.sanity_checking = True
    callbacks.on_sanity_check_start(trainer, model)
    evaluation_loop(trainer, "validate", run)
    callbacks.on_sanity_check_end(trainer, model)
    trainer.sanity_checking = False
    run.logs.clear_metrics()
    set_rng_states(rng)


def predict_loop(trainer: Any, keep: bool, run: EvalContext) -> list[list[Any]]:
    """One pass over the predict dataloaders; returns the outputs per dataloader (kept if `keep`)."""
    model, callbacks = trainer.lightning_module, run.callbacks
    hooks = run.hooks["predict"]
    modes = _module_modes(model)
    hooks.model_eval()
    callbacks.on_predict_start(trainer, model)
    model.on_predict_start()
    callbacks.on_predict_epoch_start(trainer, model)
    model.on_predict_epoch_start()
    several = len(trainer._eval_loaders["predict"]) > 1
    outputs_per_loader: list[list[Any]] = []
    with torch.inference_mode() if trainer.inference_mode else torch.no_grad():
        for dataloader_idx, loader in enumerate(trainer._eval_loaders["predict"]):
            outputs: list[Any] = []
            extra = (dataloader_idx,) if several else ()
            for batch_idx, batch in enumerate(loader):
                if batch_idx >= trainer.num_predict_batches[dataloader_idx]:
                    break
                batch = run.to_device(batch, dataloader_idx)
                callbacks.on_predict_batch_start(trainer, model, batch, batch_idx, *extra)
                model.on_predict_batch_start(batch, batch_idx, *extra)
                with run.precision.forward_context():
                    output = hooks.step(batch, batch_idx, *extra)
                callbacks.on_predict_batch_end(trainer, model, output, batch, batch_idx, *extra)
                model.on_predict_batch_end(output, batch, batch_idx, *extra)
                if keep:
                    outputs.append(output)
            outputs_per_loader.append(outputs)
    callbacks.on_predict_epoch_end(trainer, model)
    model.on_predict_epoch_end()
    callbacks.on_predict_end(trainer, model)
    model.on_predict_end()
    _put_back(modes)
    return outputs_per_loader


def split_by_dataloader(metrics: Mapping[str, torch.Tensor], count: int,
                        dataloader_of: Callable[[str], int]) -> list[dict[str, float]]:
    """The epoch metrics as one dict per dataloader (each goes to the dataloader that logged it)."""
    results: list[dict[str, float]] = [{} for _ in range(max(count, 1))]
    for name, value in metrics.items():
        results[dataloader_of(name) if count > 1 else 0][name] = value.item()
    return results


def print_results(stage: str, results: list[dict[str, float]]) -> None:
    """The result table of validate / test (a table for the user, like the progress bar, so printed)."""
    for i, metrics in enumerate(results):
        if not metrics:
            continue
        title = f"{stage} metrics" + (f" (dataloader {i})" if len(results) > 1 else "")
        width = max(len(k) for k in metrics)
        print(title)
        for name in sorted(metrics):
            print(f"  {name:<{width}}  {metrics[name]:.6g}")


__all__ = ["EvalContext", "EvalHooks", "step_call", "evaluation_loop", "sanity_check", "predict_loop",
           "split_by_dataloader", "print_results"]
