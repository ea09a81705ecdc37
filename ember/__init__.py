"""ember: organized PyTorch training.

    import ember
    trainer = ember.Trainer(max_epochs=3)
    trainer.fit(model, train_loader, val_loader)
"""

__version__ = "0.1.0"

import importlib

from ember import _logging  # noqa: E402,F401  (the "ember" logger shows on stderr)

__all__ = ["Callback", "DataModule", "Module", "Predictor", "Trainer", "seed_everything", "__version__"]

# name -> the module that defines it. Imported on first use (PEP 562), so that `import ember.cli` and
# `ember --help` do not import torch; `import ember` followed by `ember.Trainer` costs about `import torch`.
_LAZY = {
    "Callback": "ember.callbacks",
    "DataModule": "ember.data",
    "Module": "ember.module",
    "Predictor": "ember.predictor",
    "Trainer": "ember.trainer",
    "seed_everything": "ember.seed",
}
_SUBMODULES = ("tuner",)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"ember.{name}")
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
