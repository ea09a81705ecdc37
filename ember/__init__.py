"""ember: organized PyTorch training.

    import ember
    trainer = ember.Trainer(max_epochs=3)
    trainer.fit(model, train_loader, val_loader)
"""

__version__ = "0.1.0"

from ember.callbacks import Callback  # noqa: E402
from ember.data import DataModule  # noqa: E402
from ember.module import Module  # noqa: E402
from ember.seed import seed_everything  # noqa: E402
from ember.trainer import Trainer  # noqa: E402

__all__ = ["Callback", "DataModule", "Module", "Trainer", "seed_everything", "__version__"]
