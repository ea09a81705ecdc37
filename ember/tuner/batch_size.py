"""Find the largest batch size that fits in memory by running a few steps at each candidate size.

Each trial sets the batch size where the model or datamodule keeps it, rebuilds the dataloaders by
calling `train_dataloader()` (and `val_dataloader()`) again, and runs `steps_per_trial` steps. `power`
doubles the size until a trial runs out of memory; `binsearch` then bisects between the last size that
fit and the first that did not. A size larger than the dataset is never tried (it would be the same
batch), and the search ends after `max_trials` trials.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch

from ember.data import DataModule
from ember.tuner.trial import (attribute_holders, describe, get_attribute, preserved, set_attribute,
                               trial_trainer, where_looked)

METHODS = ("fit", "validate", "test", "predict")
# Errors that mean "out of memory" when torch raises them as a plain RuntimeError (older releases, cuDNN,
# cuBLAS and the CPU allocator do); torch.OutOfMemoryError is recognized by its type.
OOM_MESSAGES = ("out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "cuDNN error", "CUBLAS_STATUS_ALLOC_FAILED",
                "can't allocate memory")

log = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in OOM_MESSAGES)


def free_memory() -> None:
    """Release what a failed trial left: unreferenced tensors, then the CUDA cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def next_size(mode: str, fits: int, fails: int | None, limit: int | None) -> int | None:
    """The next size to try, given the largest size that fit (0: none yet), the smallest that did not
    (None: none yet) and the dataset size (None: unknown); None when the search is over."""
    if fails is None:  # nothing failed yet: grow, up to the dataset size
        if limit is not None and fits >= limit:
            return None
        return fits * 2 if limit is None else min(fits * 2, limit)
    if fits == 0:  # only failures so far: shrink
        return fails // 2 if fails > 1 else None
    if mode == "power" or fails - fits <= 1:
        return None
    return (fits + fails) // 2


def scale_batch_size(trainer: Any, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                     dataloaders: Any = None, datamodule: Any = None, method: str = "fit", mode: str = "power",
                     steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                     batch_arg_name: str = "batch_size") -> int:
    """See `Tuner.scale_batch_size`."""
    if mode not in ("power", "binsearch"):
        raise ValueError(f"scale_batch_size(mode={mode!r}): expected 'power' or 'binsearch'.")
    if method not in METHODS:
        raise ValueError(f"scale_batch_size(method={method!r}): expected one of {', '.join(METHODS)}.")
    for name, value in (("steps_per_trial", steps_per_trial), ("max_trials", max_trials), ("init_val", init_val)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"scale_batch_size({name}={value!r}) must be an integer.")
    if steps_per_trial < 1 or max_trials < 1:
        raise ValueError(f"scale_batch_size(steps_per_trial={steps_per_trial}, max_trials={max_trials}): both "
                         "must be at least 1.")
    if isinstance(train_dataloaders, DataModule):
        datamodule, train_dataloaders = train_dataloaders, None
    if isinstance(dataloaders, DataModule):
        datamodule, dataloaders = dataloaders, None
    if any(x is not None for x in (train_dataloaders, val_dataloaders, dataloaders)):
        raise ValueError(
            "scale_batch_size cannot change the batch size of DataLoaders passed to it: it rebuilds them for "
            f"each trial by calling {method_loader(method)}() on the datamodule or the model, which read "
            f"self.{batch_arg_name}. Move the DataLoader construction there and pass datamodule= (or nothing).")
    holders = attribute_holders(model, datamodule, batch_arg_name)
    if not holders:
        raise AttributeError(
            f"scale_batch_size found no {batch_arg_name!r} to scale (looked at "
            f"{where_looked(model, datamodule, batch_arg_name)}). Set self.{batch_arg_name} in __init__ (or "
            f"save it with save_hyperparameters) and read it in {method_loader(method)}(), or pass "
            "batch_arg_name='<name>'.")
    if init_val < 1:
        log.info(f"scale_batch_size(init_val={init_val}): a batch size is at least 1; starting at 1.")
        init_val = 1

    original = get_attribute(holders, batch_arg_name)
    chosen = None
    try:
        with preserved(model, datamodule) as folder:
            chosen, reason = _search(trainer, model, datamodule, folder, holders, batch_arg_name, method, mode,
                                     steps_per_trial, init_val, max_trials)
    finally:
        set_attribute(holders, batch_arg_name, original if chosen is None else chosen)
    log.info(f"scale_batch_size: {batch_arg_name}={chosen} ({reason}); set as {describe(holders)}.")
    return chosen


def method_loader(method: str) -> str:
    return {"fit": "train_dataloader", "validate": "val_dataloader", "test": "test_dataloader",
            "predict": "predict_dataloader"}[method]


def _search(trainer: Any, model: Any, datamodule: Any, folder: str, holders: list, name: str, method: str,
            mode: str, steps_per_trial: int, init_val: int, max_trials: int) -> tuple[int, str]:
    fits, fails, limit = 0, None, None
    failure = ""
    size: int | None = init_val
    trials = 0
    while size is not None and trials < max_trials:
        trials += 1
        set_attribute(holders, name, size)
        trial = trial_trainer(trainer, folder, **_trial_limits(trainer, method, steps_per_trial))
        try:
            _run_trial(trial, model, datamodule, method)
            fits = size
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            fails = size
            failure = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        limit = _dataset_size(trial, method) if limit is None else limit
        del trial
        if fails == size:
            for param in model.parameters():
                param.grad = None
            free_memory()
        size = next_size(mode, fits, fails, limit)
    if fits == 0:
        raise RuntimeError(
            f"scale_batch_size: no batch size fit in memory; the smallest tried, {fails}, failed with "
            f"{failure}. Reduce the model or the input size, or use a device with more memory.")
    if limit is not None and fits >= limit:
        return min(fits, limit), f"the dataset has {limit} samples"
    if fails is not None:
        return fits, f"the largest that fit; {fails} ran out of memory"
    return fits, f"max_trials={max_trials} reached"


def _trial_limits(trainer: Any, method: str, steps: int) -> dict[str, Any]:
    if method == "fit":
        # validation runs too (after the trial's last training batch), with the same batch size
        return dict(max_steps=steps, limit_train_batches=1.0, limit_val_batches=steps,
                    val_check_interval=steps * trainer.accumulate_grad_batches)
    key = {"validate": "limit_val_batches", "test": "limit_test_batches", "predict": "limit_predict_batches"}[method]
    return {key: steps}


def _run_trial(trial: Any, model: Any, datamodule: Any, method: str) -> None:
    if method == "fit":
        trial.fit(model, datamodule=datamodule)
    elif method == "validate":
        trial.validate(model, datamodule=datamodule, verbose=False)
    elif method == "test":
        trial.test(model, datamodule=datamodule, verbose=False)
    else:
        trial.predict(model, datamodule=datamodule, return_predictions=False)


def _dataset_size(trial: Any, method: str) -> int | None:
    if method == "fit":
        loaders = [trial.train_dataloader]
    else:
        loaders = trial._eval_loaders[method]
    sizes = []
    for loader in loaders:
        try:
            sizes.append(len(loader.dataset))
        except (AttributeError, TypeError):
            return None
    return max(sizes) if sizes else None
