"""The validation, test and predict loops: one pass over the dataloaders of a stage, hooks called by name.

The Trainer runs them for `validate` / `test` / `predict` and in the middle of `fit`; what they need of
the run (callbacks, the log collector, precision, batch transfer, the loggers) is passed in.
"""

from __future__ import annotations

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
    send_to_loggers: Callable[[Mapping[str, torch.Tensor]], None]


class _EvalHooks:
    """The hooks of the validation or the test loop, looked up once by their names."""

    def __init__(self, stage: str, callbacks: "CallbackList", model: Any):
        if stage == "validate":
            self.start, self.model_start = callbacks.on_validation_start, model.on_validation_start
            self.epoch_start, self.model_epoch_start = (callbacks.on_validation_epoch_start,
                                                        model.on_validation_epoch_start)
            self.batch_start, self.model_batch_start = (callbacks.on_validation_batch_start,
                                                        model.on_validation_batch_start)
            self.step = model.validation_step
            self.batch_end, self.model_batch_end = callbacks.on_validation_batch_end, model.on_validation_batch_end
            self.epoch_end, self.model_epoch_end = callbacks.on_validation_epoch_end, model.on_validation_epoch_end
            self.end, self.model_end = callbacks.on_validation_end, model.on_validation_end
            word = "validation"
        else:
            self.start, self.model_start = callbacks.on_test_start, model.on_test_start
            self.epoch_start, self.model_epoch_start = callbacks.on_test_epoch_start, model.on_test_epoch_start
            self.batch_start, self.model_batch_start = callbacks.on_test_batch_start, model.on_test_batch_start
            self.step = model.test_step
            self.batch_end, self.model_batch_end = callbacks.on_test_batch_end, model.on_test_batch_end
            self.epoch_end, self.model_epoch_end = callbacks.on_test_epoch_end, model.on_test_epoch_end
            self.end, self.model_end = callbacks.on_test_end, model.on_test_end
            word = "test"
        self.names = {hook: f"on_{word}_{hook}" for hook in ("start", "epoch_start", "batch_start", "batch_end",
                                                              "epoch_end", "end")}
        self.names["step"] = f"{word}_step"


def evaluation_loop(trainer: Any, stage: str, run: EvalContext) -> list[dict[str, float]]:
    """One pass over the validation or test dataloaders; returns the epoch metrics per dataloader."""
    model, callbacks, logs = trainer.lightning_module, run.callbacks, run.logs
    hooks = _EvalHooks(stage, callbacks, model)
    names = hooks.names
    loaders = trainer.val_dataloaders if stage == "validate" else trainer.test_dataloaders
    limits = trainer.num_val_batches if stage == "validate" else trainer.num_test_batches
    if trainer.sanity_checking:
        sanity = trainer.num_sanity_val_steps
        limits = [min(n, sanity if sanity >= 0 else math.inf) for n in limits]
    was_training = model.training
    model.eval()
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
        logs.dataloader_idx = None
        with logs.in_hook(names["epoch_end"]):
            hooks.epoch_end(trainer, model)
            hooks.model_epoch_end()
    metrics = logs.end_epoch()
    if not trainer.sanity_checking:
        run.send_to_loggers(metrics)
    if stage == "validate" and trainer.training:
        # the validation is complete (metrics logged): a checkpoint written in on_validation_end resumes
        # after it instead of running it, and logging it, a second time
        trainer.fit_state.validated_at = trainer.fit_state.batches_done
    with logs.in_hook(names["end"]):
        hooks.end(trainer, model)
        hooks.model_end()
    model.train(was_training)
    return split_by_dataloader(metrics, len(loaders))


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
    model.eval()
    callbacks.on_predict_start(trainer, model)
    model.on_predict_start()
    callbacks.on_predict_epoch_start(trainer, model)
    model.on_predict_epoch_start()
    several = len(trainer.predict_dataloaders) > 1
    outputs_per_loader: list[list[Any]] = []
    with torch.inference_mode() if trainer.inference_mode else torch.no_grad():
        for dataloader_idx, loader in enumerate(trainer.predict_dataloaders):
            outputs: list[Any] = []
            extra = (dataloader_idx,) if several else ()
            for batch_idx, batch in enumerate(loader):
                if batch_idx >= trainer.num_predict_batches[dataloader_idx]:
                    break
                batch = run.to_device(batch, dataloader_idx)
                callbacks.on_predict_batch_start(trainer, model, batch, batch_idx, *extra)
                model.on_predict_batch_start(batch, batch_idx, *extra)
                with run.precision.forward_context():
                    output = model.predict_step(batch, batch_idx, *extra)
                callbacks.on_predict_batch_end(trainer, model, output, batch, batch_idx, *extra)
                model.on_predict_batch_end(output, batch, batch_idx, *extra)
                if keep:
                    outputs.append(output)
            outputs_per_loader.append(outputs)
    callbacks.on_predict_epoch_end(trainer, model)
    model.on_predict_epoch_end()
    callbacks.on_predict_end(trainer, model)
    model.on_predict_end()
    return outputs_per_loader


def split_by_dataloader(metrics: Mapping[str, torch.Tensor], count: int) -> list[dict[str, float]]:
    """The epoch metrics as one dict per dataloader (keys ending in `/dataloader_idx_N` go to dict N)."""
    results: list[dict[str, float]] = [{} for _ in range(max(count, 1))]
    for name, value in metrics.items():
        index = 0
        if "/dataloader_idx_" in name:
            index = int(name.rsplit("/dataloader_idx_", 1)[1])
        results[index][name] = value.item()
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


__all__ = ["EvalContext", "evaluation_loop", "sanity_check", "predict_loop", "split_by_dataloader", "print_results"]
