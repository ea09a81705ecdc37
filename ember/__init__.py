"""ember: organized PyTorch training.

    import ember
    trainer = ember.Trainer(max_epochs=3)
    trainer.fit(model, train_loader, val_loader)
"""

__version__ = "0.1.0"

import logging  # noqa: E402
import sys  # noqa: E402


class _UntilConfigured(logging.Handler):
    """Shows ember's messages (INFO and up: "Seed set to 0", what the tuner chose) on stderr while the
    application has configured no logging. Once the root logger has a handler (`logging.basicConfig`,
    Hydra's job logging), it stays silent and the messages reach those handlers instead: the console
    and Hydra's `<job>.log` file. Checked at each message, so logging configured after `import ember`
    takes over. `logging.getLogger("ember").setLevel(logging.WARNING)` hides the INFO messages."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        try:
            sys.stderr.write(self.format(record) + "\n")  # sys.stderr now, so redirections are followed
        except Exception:
            self.handleError(record)


_log = logging.getLogger("ember")
_log.setLevel(logging.INFO)
_log.addHandler(_UntilConfigured())

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
