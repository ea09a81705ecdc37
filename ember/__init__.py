"""ember: organized PyTorch training.

    import ember
    trainer = ember.Trainer(max_epochs=3)
    trainer.fit(model, train_loader, val_loader)
"""

__version__ = "0.1.0"

from ember import _logging  # noqa: E402,F401  (the "ember" logger shows on stderr)

from ember.callbacks import Callback  # noqa: E402
from ember.data import DataModule  # noqa: E402
from ember.module import Module  # noqa: E402
from ember.seed import seed_everything  # noqa: E402
from ember.trainer import Trainer  # noqa: E402

__all__ = ["Callback", "DataModule", "Module", "Predictor", "Trainer", "seed_everything", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `import ember` costs about `import torch`
    if name == "Predictor":
        from ember.predictor import Predictor

        return Predictor
    if name == "tuner":
        import importlib

        return importlib.import_module("ember.tuner")
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
