"""Loggers. CSVLogger needs nothing; the others import their library when first used."""

from ember.loggers.base import Logger
from ember.loggers.csv import CSVLogger

_LAZY = {
    "TensorBoardLogger": "ember.loggers.tensorboard",
    "MLFlowLogger": "ember.loggers.mlflow",
    "WandbLogger": "ember.loggers.wandb",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ember.loggers' has no attribute {name!r}")


__all__ = ["Logger", "CSVLogger", *_LAZY]
