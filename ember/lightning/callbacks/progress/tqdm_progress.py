"""`lightning.pytorch.callbacks.tqdm_progress`."""

from ember.callbacks.progress import TQDMProgressBar

__all__ = ["TQDMProgressBar"]
