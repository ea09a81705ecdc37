"""The Trainer's arguments: checks and messages, and the loggers and callbacks they turn into.

Every check runs in `Trainer.__init__`, so a bad argument fails before any data is touched. Messages say
what was given, what was expected, and the fix.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import warnings
from typing import Any, Iterable, Mapping

from ember.callbacks.base import Callback
from ember.callbacks.timer import parse_max_time  # noqa: F401  (the Trainer's max_time, Timer's duration)
from ember.plain import omegaconf_kind

# Lightning 1.x arguments that 2.x removed, and what replaced them.
REMOVED_ARGUMENTS = {
    "gpus": "accelerator='gpu', devices=N",
    "tpu_cores": "accelerator='tpu', devices=N",
    "num_processes": "devices=N",
    "resume_from_checkpoint": "trainer.fit(model, ckpt_path=...)",
    "auto_lr_find": "ember.tuner.Tuner(trainer).lr_find(model)",
    "auto_scale_batch_size": "ember.tuner.Tuner(trainer).scale_batch_size(model)",
    "auto_select_gpus": "devices=N (free devices are chosen by CUDA_VISIBLE_DEVICES)",
    "checkpoint_callback": "enable_checkpointing",
    "weights_summary": "enable_model_summary",
    "progress_bar_refresh_rate": "enable_progress_bar (and the progress bar callback's refresh_rate)",
    "flush_logs_every_n_steps": "the logger's own flush argument",
    "terminate_on_nan": "detect_anomaly=True",
    "replace_sampler_ddp": "use_distributed_sampler",
    "weights_save_path": "default_root_dir, or ModelCheckpoint(dirpath=...)",
    "stochastic_weight_avg": "a StochasticWeightAveraging callback",
    "track_grad_norm": "a callback that logs the grad norm in on_before_optimizer_step",
    "amp_backend": "precision='16-mixed'",
    "amp_level": "precision='16-mixed'",
    "move_metrics_to_cpu": "nothing: metrics stay where they are computed",
    "multiple_trainloader_mode": "a CombinedLoader in your DataModule",
    "reload_dataloaders_every_epoch": "reload_dataloaders_every_n_epochs=1",
    "prepare_data_per_node": "DataModule.prepare_data_per_node",
    "truncated_bptt_steps": "manual optimization",
    "log_gpu_memory": "a DeviceStatsMonitor callback",
    "process_position": "the progress bar callback",
}


def build_loggers(logger: Any, root: str, default: str = "ember") -> list[Any]:
    """The loggers of `Trainer(logger=...)`. True or None gives the default: ember's is a CSVLogger under
    `ember_logs/`; Lightning's (`default="lightning"`, for `ember.lightning.Trainer`) a TensorBoardLogger
    under `lightning_logs/` when tensorboard is installed, else a CSVLogger there."""
    from ember.loggers.base import Logger

    if logger is None or logger is True:
        from ember.loggers.csv import CSVLogger

        if default == "ember":
            return [CSVLogger(root, name="ember_logs")]
        if importlib.util.find_spec("tensorboard") is not None:
            from ember.loggers.tensorboard import TensorBoardLogger

            return [TensorBoardLogger(root, name="lightning_logs")]
        warnings.warn("Trainer(logger=True) logs to a CSVLogger under lightning_logs/: Lightning's default, "
                      "TensorBoard, is not installed (pip install 'ember[tensorboard]').", stacklevel=4)
        return [CSVLogger(root, name="lightning_logs")]
    if logger is False:
        return []
    loggers = as_list(logger)
    for item in loggers:
        if not isinstance(item, Logger):
            raise TypeError(f"Trainer(logger=...) got a {type(item).__name__}; expected True, False, an "
                            "ember.loggers.Logger, or a list of them.")
    return loggers


def build_callbacks(callbacks: Any, enable_checkpointing: bool | None, enable_progress_bar: bool | None,
                     enable_model_summary: bool | None) -> list[Callback]:
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.callbacks.progress import ProgressBar
    from ember.callbacks.summary import ModelSummary

    callbacks = as_list(callbacks)
    for item in callbacks:
        if not isinstance(item, Callback):
            raise TypeError(f"Trainer(callbacks=...) got a {type(item).__name__}; expected ember.Callback objects.")
    has_checkpoint = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    if enable_checkpointing is False and has_checkpoint:
        raise ValueError("Trainer(enable_checkpointing=False) but callbacks include a ModelCheckpoint; remove one "
                         "of them.")
    if enable_checkpointing is not False and not has_checkpoint:
        callbacks.append(ModelCheckpoint())
    if enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar())
    if enable_model_summary is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ModelSummary())
    return callbacks


def ordered_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Checkpoint callbacks run last, so they see what every other callback did this step."""
    from ember.callbacks.model_checkpoint import ModelCheckpoint

    return [c for c in callbacks if not isinstance(c, ModelCheckpoint)] + \
        [c for c in callbacks if isinstance(c, ModelCheckpoint)]


def split_judges(callbacks: list[Callback]) -> tuple[list[Callback], list[Callback]]:
    """(the other callbacks, EarlyStopping and ModelCheckpoint callbacks): at the end of a training epoch
    the module's hook runs between the two (Lightning's order), so what it logs there is judged."""
    from ember.callbacks.early_stopping import EarlyStopping
    from ember.callbacks.model_checkpoint import ModelCheckpoint

    judges = [c for c in callbacks if isinstance(c, (EarlyStopping, ModelCheckpoint))]
    return [c for c in callbacks if c not in judges], judges


def as_list(value: Any) -> list[Any]:
    """One object or several as a list: a list, tuple, or OmegaConf ListConfig (what Hydra's `instantiate`
    passes for a list), or the values of a dict or DictConfig (a config group of named callbacks)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or omegaconf_kind(value) == "ListConfig":
        return list(value)
    if isinstance(value, Mapping) or omegaconf_kind(value) == "DictConfig":
        return list(value.values())
    return [value]


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Trainer({name}={value!r}) must be an integer >= {minimum}.")
    return value


def check_limit(name: str, value: Any) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"Trainer({name}={value!r}) must be a fraction in [0.0, 1.0] or a number of batches.")
    if isinstance(value, float) and value > 1.0:
        raise ValueError(f"Trainer({name}={value}) is a float above 1.0; pass a fraction in [0.0, 1.0] or an "
                         f"int number of batches ({name}={int(value)}).")
    return value


def limited(length: int | None, limit: int | float, name: str) -> float:
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(limit, length) if length is not None else limit
    if length is None:
        if limit not in (0.0, 1.0):
            raise ValueError(f"Trainer({name}={limit}) is a fraction, but the dataloader has no length; pass an "
                             "int number of batches.")
        return math.inf if limit == 1.0 else 0
    return int(length * limit) if limit < 1.0 else length


def unknown_argument_message(unknown: Mapping[str, Any], valid: Iterable[str]) -> str:
    lines = []
    valid = list(valid)
    for name in unknown:
        from ember.lightning.not_supported import COMPAT_DOC, REASONS

        if name in REMOVED_ARGUMENTS:
            lines.append(f"Trainer({name}=...) was removed in Lightning 2.0 and ember does not take it; use "
                         f"{REMOVED_ARGUMENTS[name]} instead.")
        elif name in REASONS:
            lines.append(f"Trainer({name}=...) is a Lightning 2.x argument that ember does not support: "
                         f"{REASONS[name]}. See the row {name!r} in {COMPAT_DOC}.")
        else:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            lines.append(f"Trainer() got an unknown argument {name!r}.{hint} Valid arguments: {', '.join(valid)}.")
    return "\n".join(lines)


def check_sources(model: Any, loaders: Any, datamodule: Any, stage: str, argument: str, module_class: type,
                  datamodule_class: type) -> None:
    """What fit / validate / test / predict were given: a Module, and loaders or a datamodule, not both."""
    if model is None:
        raise TypeError(f"trainer.{stage}() needs a model: pass trainer.{stage}(model, ...). (Without one, "
                        "the model of the last fit is used; there was none.)")
    if not isinstance(model, module_class):
        raise TypeError(f"trainer.{stage}(model) expects an ember.Module (LightningModule), got "
                        f"{type(model).__name__}. Subclass ember.Module and define training_step and "
                        "configure_optimizers.")
    if loaders is not None and datamodule is not None:
        raise ValueError(f"trainer.{stage}() got both {argument} and datamodule; pass one of them.")
    if datamodule is not None and not isinstance(datamodule, datamodule_class):
        raise TypeError(f"trainer.{stage}(datamodule=...) expects an ember.DataModule, got "
                        f"{type(datamodule).__name__}.")
    step = STEPS[stage]
    own = step in vars(model) or getattr(type(model), step, None) is not getattr(module_class, step)
    if getattr(model, step, None) is None or (stage != "predict" and not own):
        state = "None" if getattr(model, step, None) is None else "not defined"
        raise ValueError(f"trainer.{stage}() runs {type(model).__name__}.{step}(batch, batch_idx), which is "
                         f"{state}. Define it{', returning the loss' if stage == 'fit' else ''}, or call another "
                         "stage. (Setting a step to None switches its loop off inside fit only.)")


# the step each entry point runs
STEPS = {"fit": "training_step", "validate": "validation_step", "test": "test_step", "predict": "predict_step"}


def merge_callbacks(trainer_callbacks: list[Callback], model_callbacks: list[Callback]) -> list[Callback]:
    """The Trainer's callbacks with those of `configure_callbacks`, which replace the Trainer's of the same
    type (Lightning's rule: the model knows best, e.g. its own ModelCheckpoint)."""
    replaced = {type(c) for c in model_callbacks}
    return [c for c in trainer_callbacks if type(c) not in replaced] + list(model_callbacks)


def check_fast_dev_run(value: Any) -> int | bool:
    """`fast_dev_run`: False, or a number of batches (True is 1)."""
    if value is True:
        return 1
    if value is not False and (not isinstance(value, int) or value < 0):
        raise ValueError(f"Trainer(fast_dev_run={value!r}) must be True, False, or a number of batches.")
    return value


def check_clipping(value: float | None, algorithm: str | None) -> tuple[float | None, str]:
    """(gradient_clip_val, gradient_clip_algorithm) checked; the algorithm defaults to 'norm'."""
    if algorithm not in (None, "norm", "value"):
        raise ValueError(f"Trainer(gradient_clip_algorithm={algorithm!r}): expected 'norm' or 'value'.")
    if value is not None and value < 0:
        raise ValueError(f"Trainer(gradient_clip_val={value}) must be >= 0.")
    return value, algorithm or "norm"
