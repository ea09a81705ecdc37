"""Predictor: a trained model and its checkpoint, ready to run on raw inputs. No Trainer involved.

    predictor = ember.Predictor.from_checkpoint(Classifier, "runs/best.ckpt")
    logits = predictor(torch.randn(100, 4))          # a tensor: split into batches along dim 0
    logits = predictor([sample_1, sample_2, ...])    # samples: collated with torch's default_collate
    logits = predictor(DataLoader(dataset))          # batches as the loader makes them

Each call runs the model in eval mode under `torch.inference_mode()` (so no gradients), through its own
`on_before_batch_transfer` / `transfer_batch_to_device` / `on_after_batch_transfer` hooks and
`predict_step` (a plain `nn.Module` runs `forward`). A model you pass in keeps its own state: the
train/eval flag of each submodule is put back after each call and `requires_grad` is never touched, so
`Predictor(model)` in the middle of training changes nothing but the model's device (`model.to(device)`
moves it in place, as always in PyTorch). `Predictor.from_checkpoint` builds its own model, frozen and in
eval mode.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ember.data import move_to_device


class Predictor:
    """Run a model on inputs in batches and put the outputs back together.

    Args:
        model: an ember Module (its `predict_step` runs) or any `nn.Module` (its `forward` runs).
        device: where to run; default CUDA when available, else the CPU.
        batch_size: samples per batch when the inputs are a tensor or a list of samples.

    Example:
        >>> predictor = ember.Predictor(model, batch_size=64)
        >>> predictor(torch.randn(10, 4)).shape
        torch.Size([10, 2])
    """

    def __init__(self, model: nn.Module, device: Any = None, batch_size: int = 32) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Predictor(model=...) expects a torch.nn.Module (an ember.Module), got "
                            f"{type(model).__name__}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Predictor(batch_size={batch_size!r}) must be a positive integer.")
        self.device = torch.device(device) if device is not None else _default_device()
        self.batch_size = batch_size
        self.model = model.to(self.device)

    @classmethod
    def from_checkpoint(cls, module_class: type, path: str | os.PathLike, map_location: Any = None,
                        device: Any = None, batch_size: int = 32, **overrides: Any) -> "Predictor":
        """Build `module_class` from a checkpoint (its hyperparameters, updated by `overrides`, and its
        weights) and wrap it.

        Args:
            module_class: the Module subclass the checkpoint was trained with.
            path: the checkpoint file.
            map_location: where the weights load (as in `load_from_checkpoint`); also the default device.
            device: where the model runs; default `map_location` if it names a device, else CUDA when
                available, else the CPU.
            batch_size: samples per batch.
            overrides: hyperparameters that replace the checkpoint's.

        Example:
            >>> predictor = ember.Predictor.from_checkpoint(Classifier, "runs/best.ckpt", device="cpu")
        """
        if not (isinstance(module_class, type) and hasattr(module_class, "load_from_checkpoint")):
            raise TypeError(f"Predictor.from_checkpoint expects the Module class the checkpoint was trained with "
                            f"(e.g. Predictor.from_checkpoint(Classifier, path)), got {module_class!r}.")
        model = module_class.load_from_checkpoint(path, map_location=map_location, **overrides)
        model.requires_grad_(False).eval()  # this model is the predictor's alone
        if device is None and isinstance(map_location, (str, torch.device)):
            device = map_location
        return cls(model, device=device, batch_size=batch_size)

    def __call__(self, inputs: Any) -> Any:
        return self.predict(inputs)

    def predict(self, inputs: Any) -> Any:
        """The model's outputs for `inputs`, concatenated along the batch dimension.

        Args:
            inputs: a tensor (split into batches along dim 0); a tuple of tensors with the same first
                dimension, for a model of several inputs (each split alike); a list of samples (collated
                in groups of `batch_size` with torch's `default_collate`); or a DataLoader (any iterable
                of batches).

        Returns:
            A tensor when each batch gives a tensor; a dict or tuple of tensors when each batch gives one;
            a flat list when each batch gives a list (one item per sample); else the list of batch outputs.
        """
        outputs = []
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.inference_mode():
                for batch_idx, batch in enumerate(self._batches(inputs)):
                    outputs.append(self._run(batch, batch_idx))
        finally:
            for module, training in modes:  # each one as it was: a frozen submodule may be in eval mode alone
                module.training = training
        return _concatenate(outputs)

    def _batches(self, inputs: Any) -> Iterable[Any]:
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() == 0:
                raise ValueError("Predictor got a 0-dimensional tensor; pass a batch with the samples along dim 0 "
                                 "(x.unsqueeze(0) for one sample).")
            return inputs.split(self.batch_size)
        if isinstance(inputs, tuple) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
            sizes = {len(t) for t in inputs}
            if len(sizes) != 1:
                raise ValueError(f"Predictor got a tuple of tensors with different first dimensions "
                                 f"{[len(t) for t in inputs]}; each holds the same samples along dim 0.")
            return zip(*(t.split(self.batch_size) for t in inputs))
        if isinstance(inputs, list):
            from torch.utils.data import default_collate

            return (default_collate(inputs[i:i + self.batch_size]) for i in range(0, len(inputs), self.batch_size))
        if isinstance(inputs, (str, bytes, Mapping)) or not hasattr(inputs, "__iter__"):
            raise TypeError(f"Predictor got a {type(inputs).__name__}; expected a tensor (samples along dim 0), a "
                            "tuple of such tensors, a list of samples, or a DataLoader (any iterable of batches).")
        return inputs

    def _run(self, batch: Any, batch_idx: int) -> Any:
        model = self.model
        if not hasattr(model, "predict_step"):
            batch = move_to_device(batch, self.device)
            return model(*batch) if isinstance(batch, (tuple, list)) else model(batch)
        batch = model.on_before_batch_transfer(batch, 0)
        batch = model.transfer_batch_to_device(batch, self.device, 0)
        batch = model.on_after_batch_transfer(batch, 0)
        return model.predict_step(batch, batch_idx)


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _concatenate(outputs: list[Any]) -> Any:
    """Put per-batch outputs back together along the batch dimension."""
    if not outputs:
        return []
    first = outputs[0]
    if all(isinstance(o, torch.Tensor) and o.dim() > 0 for o in outputs):
        return torch.cat(outputs)
    if all(isinstance(o, Mapping) for o in outputs) and all(o.keys() == first.keys() for o in outputs):
        return {k: _concatenate([o[k] for o in outputs]) for k in first}
    if all(isinstance(o, tuple) and len(o) == len(first) for o in outputs):
        return tuple(_concatenate(list(column)) for column in zip(*outputs))
    if all(isinstance(o, list) for o in outputs):
        return [item for o in outputs for item in o]
    return outputs


__all__ = ["Predictor"]
