"""Run one program under ember and under Lightning: the tests that compare the two build their Module
from a function of the base class, so the code under test is the same text for both."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
import ember.loggers


def data(n: int = 32, batch_size: int = 8, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def lightning():
    """Lightning's `lightning.pytorch`, or a skip when it is not installed."""
    return pytest.importorskip("lightning.pytorch")


def quiet_options(**options: Any) -> dict[str, Any]:
    settings = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
    settings.update(options)
    return settings


def fit_both(make_module: Callable[[type], type], tmp_path, fit: Callable[[Any, Any], Any] | None = None,
             csv: bool = False, **options: Any) -> tuple[Any, Any, Any, Any]:
    """Fit `make_module(base)()` under ember and Lightning, from the same initial weights; `csv`: each
    Trainer logs to a CSVLogger of its own library.

    Returns (ember model, ember trainer, Lightning model, Lightning trainer)."""
    L = lightning()
    fit = fit or (lambda trainer, model: trainer.fit(model, data()))
    results = []
    for base, trainer_class, csv_logger, extra in (
            (ember.Module, ember.Trainer, ember.loggers.CSVLogger, {}),
            (L.LightningModule, L.Trainer, L.loggers.CSVLogger, {"accelerator": "cpu"})):
        torch.manual_seed(0)
        model = make_module(base)()
        root = tmp_path / trainer_class.__module__
        settings = quiet_options(**options)
        if csv:
            settings["logger"] = csv_logger(root)
        trainer = trainer_class(default_root_dir=root, **extra, **settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's own notes (num_workers, tips)
            fit(trainer, model)
        results += [model, trainer]
    return tuple(results)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
