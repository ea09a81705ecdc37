"""Lightning names that ember does not have, and the error that says so.

Every name here is a "not supported" row of docs/lightning-compat.md. Importing one (`from
ember.lightning.callbacks import ModelPruning`) or passing one (`Trainer(profiler="simple")`) raises
`NotSupportedError` with the reason and what to use instead, so code never runs silently different.
"""

from __future__ import annotations

from typing import NoReturn

COMPAT_DOC = "docs/lightning-compat.md"

# name -> why it is not there, and what to do instead
REASONS: dict[str, str] = {
    # callbacks
    "ModelPruning": "pruning is a model transformation, not a training loop feature; apply "
                    "torch.nn.utils.prune yourself in a Callback (e.g. in on_train_epoch_end)",
    "SpikeDetection": "ember stops on a non-finite loss itself (detect_anomaly=True); for loss spikes, compare "
                      "the loss to a running mean in on_train_batch_end and set trainer.should_stop",
    "ThroughputMonitor": "use ember's benchmarks/ or log samples per second from on_train_batch_end",
    "WeightAveraging": "use StochasticWeightAveraging, or torch.optim.swa_utils.AveragedModel in a Callback",
    "EMAWeightAveraging": "use torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn()) "
                          "updated in on_train_batch_end",
    "BasePredictionWriter": "collect trainer.predict(...)'s return value, or write outputs in "
                            "Callback.on_predict_batch_end",
    "Checkpoint": "subclass ModelCheckpoint (or Callback) instead",
    # loggers
    "CometLogger": "ember ships CSV, TensorBoard, MLflow and W&B loggers; subclass ember.loggers.Logger for Comet",
    "LitLogger": "ember ships CSV, TensorBoard, MLflow and W&B loggers; subclass ember.loggers.Logger",
    "NeptuneLogger": "ember ships CSV, TensorBoard, MLflow and W&B loggers; subclass ember.loggers.Logger",
    # utilities
    "CombinedLoader": "ember trains on one training dataloader; zip or concatenate datasets yourself "
                      "(torch.utils.data.ConcatDataset), and pass several validation loaders as a list",
    "measure_flops": "use torch.utils.flop_counter.FlopCounterMode directly",
    "is_shared_filesystem": "ember does not check the filesystem across nodes",
    # Trainer arguments
    "profiler": "use torch.profiler.profile around trainer.fit, or in a Callback",
    "plugins": "ember's precision and environment are chosen by the precision= and strategy= arguments",
    "sync_batchnorm": "convert the model with torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) before fit",
    "model_registry": "Lightning's model registry is a hosted service; save with ModelCheckpoint",
    "enable_autolog_hparams": "ember always sends the hyperparameters to the loggers",
    "TQDMProgressBar.init_*_tqdm": "ember's bar is its own one-line bar, not tqdm's; override get_metrics() "
                                   "to change what it shows, or write a Callback that draws with tqdm",
    # Trainer attributes
    "fit_loop": "ember's fit loop is one function (ember/trainer.py), not an object; its counters are in "
                "trainer.fit_state (epoch, global_step, batches_done, ...)",
    "validate_loop": "the evaluation loops are functions (ember/evaluation.py); read trainer.num_val_batches and "
                     "trainer.callback_metrics",
    "test_loop": "the evaluation loops are functions (ember/evaluation.py); read trainer.num_test_batches",
    "predict_loop": "the predict loop is a function (ember/evaluation.py); trainer.predict returns the outputs",
    "is_last_batch": "compare batch_idx + 1 with trainer.num_training_batches in the batch hooks",
    "precision_plugin": "ember's precision is chosen by Trainer(precision=...); its grad scaler is trainer.scaler",
    # DataModule hooks the Trainer does not call yet
    "LightningDataModule.on_exception": "handle the failure in a Callback's on_exception (which the Trainer "
                                        "calls) instead",
    # LightningModule hooks ember's loop does not call (yet): a Module overriding one is refused when the class
    # is defined, instead of training without it. Each row lifts itself once ember.Module has the hook.
    "LightningModule.configure_sharded_model": "Lightning 2.x renamed it configure_model, which ember calls: build "
                                               "the layers there",
    # Tuner-era and 1.x names
    "ProgressBarBase": "Lightning 1.x; use ProgressBar",
}


class NotSupportedError(ImportError):
    """A Lightning name that ember does not have (an ImportError, so `from ... import` shows the reason)."""


def message(name: str, where: str) -> str:
    """What a not-supported row says: what was reached, why ember lacks it, what to use, and the row."""
    reason = REASONS.get(name, "ember does not implement it")
    return f"{where} is not supported by ember: {reason}. See the row {name!r} in {COMPAT_DOC}."


def refuse(name: str, where: str, error: type[Exception] = NotSupportedError) -> NoReturn:
    """Raise the error of the row `name`, which the user reached as `where` (an import by default; a
    TypeError for an argument, an AttributeError for an attribute)."""
    raise error(message(name, where))


# hook -> its row: a subclass overriding one of these is refused while its base class lacks the hook
MODULE_HOOKS = {name.partition(".")[2]: name for name in REASONS if name.startswith("LightningModule.")}
DATAMODULE_HOOKS = {"on_exception": "LightningDataModule.on_exception"}


def refuse_unsupported_hooks(cls: type, base: type, hooks: dict[str, str]) -> None:
    """Raise a TypeError naming the row if `cls` defines a hook of `hooks` that `base` (ember's class) lacks,
    and which ember's loop would therefore never call."""
    for hook, row in hooks.items():
        if any(hook in vars(klass) for klass in cls.__mro__ if klass is not base and issubclass(klass, base)) \
                and not hasattr(base, hook):
            refuse(row, f"{cls.__name__}.{hook}", TypeError)


def module_getattr(module: str, names: dict[str, str] | None = None):
    """A module `__getattr__` that imports `names` (attribute -> 'module:attribute') lazily and refuses the
    names of REASONS with their reason."""

    def __getattr__(name: str):
        if names and name in names:
            import importlib

            path, _, attribute = names[name].partition(":")
            return getattr(importlib.import_module(path), attribute)
        if name in REASONS:
            refuse(name, f"{module}.{name}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["DATAMODULE_HOOKS", "MODULE_HOOKS", "NotSupportedError", "REASONS", "message", "module_getattr", "refuse",
           "refuse_unsupported_hooks"]
