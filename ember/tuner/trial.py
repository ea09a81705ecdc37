"""What the learning-rate finder and the batch-size scaler share.

Both run short trial fits and must leave everything as it was apart from the value they choose:

- `preserved(model, datamodule)` writes the model's weights and the RNG states to a temporary checkpoint
  before the trials and puts them back after (also the train/eval mode of every submodule, which
  gradients were empty, and the Trainer the model and datamodule were attached to), then deletes it.
- `trial_trainer(trainer, folder, ...)` builds a throwaway Trainer with the user's device, precision,
  accumulation and clipping, but no logger, no checkpointing, no progress bar, no callbacks and its
  root in the temporary folder, so a trial writes nothing into the user's run folders and the user's
  Trainer (its counters, callbacks, optimizers, loggers) is never touched.
- `attribute_holders` / `set_attribute` find and set a value such as `lr` or `batch_size` wherever the
  model or datamodule keeps it (an attribute or a key of `hparams`).
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from ember.checkpoint import load_checkpoint, load_weights, save_checkpoint
from ember.seed import rng_states, set_rng_states


@contextlib.contextmanager
def preserved(model: Any, datamodule: Any = None) -> Iterator[str]:
    """Run the body, then put the model, the RNG states and the attachments back; yields a temp folder."""
    folder = tempfile.mkdtemp(prefix="ember-tuner-")
    path = Path(folder) / "before.ckpt"
    save_checkpoint({"state_dict": model.state_dict(), "rng": rng_states()}, path)
    layout = {name: (t.device, t.dtype) for name, t in model.state_dict().items() if isinstance(t, torch.Tensor)}
    modes = {name: module.training for name, module in model.named_modules()}
    no_grad = {name for name, p in model.named_parameters() if p.grad is None}
    model_trainer = getattr(model, "_trainer", None)
    datamodule_trainer = getattr(datamodule, "trainer", None)
    # callbacks the model configures (often a ModelCheckpoint) belong to the real fit, not to trials
    own_configure_callbacks = model.__dict__.get("configure_callbacks")
    model.configure_callbacks = _no_callbacks
    try:
        yield folder
    finally:
        try:
            if own_configure_callbacks is None:
                del model.configure_callbacks
            else:
                model.configure_callbacks = own_configure_callbacks
            saved = load_checkpoint(path, map_location="cpu")
            _put_back_weights(model, saved["state_dict"], layout)
            for name, module in model.named_modules():
                if name in modes:
                    module.training = modes[name]
            for name, param in model.named_parameters():
                if name in no_grad:
                    param.grad = None
            model._trainer = model_trainer
            if datamodule is not None:
                datamodule.trainer = datamodule_trainer
            set_rng_states(saved["rng"])
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _no_callbacks() -> list[Any]:
    return []


def _put_back_weights(model: Any, state_dict: Mapping[str, Any], layout: Mapping[str, Any]) -> None:
    """Load the saved weights in place, first undoing any device or dtype change a trial made (such as
    precision='64-true' converting the module), so every tensor is bit-identical and the Parameter
    objects that optimizers hold stay the same objects."""
    live = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, (device, dtype) in layout.items():
            tensor = live.get(name)
            if isinstance(tensor, torch.Tensor) and (tensor.device != device or tensor.dtype != dtype):
                tensor.data = tensor.data.to(device=device, dtype=dtype)
    load_weights(model, state_dict, source="the tuner's snapshot of the model")


def trial_trainer(trainer: Any, folder: str, callbacks: list[Any] | None = None, **settings: Any) -> Any:
    """A Trainer that trains like `trainer` (device, precision, accumulation, clipping) but records nothing."""
    from ember.trainer import Trainer

    options: dict[str, Any] = dict(
        strategy=trainer.strategy,
        precision=trainer.precision,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        gradient_clip_val=trainer.gradient_clip_val,
        gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        deterministic=trainer.deterministic,
        benchmark=trainer.benchmark,
        inference_mode=trainer.inference_mode,
        detect_anomaly=trainer.detect_anomaly,
        use_distributed_sampler=trainer.use_distributed_sampler,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_epochs=-1,
        callbacks=list(callbacks or []),
        default_root_dir=folder,
    )
    options.update(settings)
    return Trainer(**options)


def attribute_holders(model: Any, datamodule: Any, name: str) -> list[tuple[Any, str]]:
    """Every place that keeps `name`, as (object or dict, label): the model, `model.hparams`, the
    datamodule, `datamodule.hparams`."""
    holders: list[tuple[Any, str]] = []
    for owner in (model, datamodule):
        if owner is None:
            continue
        label = type(owner).__name__
        if _has_attribute(owner, name):
            holders.append((owner, f"{label}.{name}"))
        hparams = getattr(owner, "hparams", None)
        if isinstance(hparams, Mapping) and name in hparams:
            holders.append((hparams, f"{label}.hparams[{name!r}]"))
    return holders


def _has_attribute(owner: Any, name: str) -> bool:
    try:
        value = getattr(owner, name)
    except AttributeError:
        return False
    return not inspect.isroutine(value)


def where_looked(model: Any, datamodule: Any, name: str) -> str:
    places = [f"{type(model).__name__}.{name}", f"{type(model).__name__}.hparams[{name!r}]"]
    if datamodule is not None:
        places += [f"{type(datamodule).__name__}.{name}", f"{type(datamodule).__name__}.hparams[{name!r}]"]
    return ", ".join(places)


def get_attribute(holders: list[tuple[Any, str]], name: str) -> Any:
    target = holders[0][0]
    return target[name] if isinstance(target, Mapping) else getattr(target, name)


def set_attribute(holders: list[tuple[Any, str]], name: str, value: Any) -> None:
    for target, _ in holders:
        if isinstance(target, Mapping):
            target[name] = value
        else:
            setattr(target, name, value)


def describe(holders: list[tuple[Any, str]]) -> str:
    """"Net.lr and Net.hparams['lr']", for messages."""
    return " and ".join(label for _, label in holders)
