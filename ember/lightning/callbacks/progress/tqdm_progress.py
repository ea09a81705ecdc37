"""`lightning.pytorch.callbacks.progress.tqdm_progress`."""

from ember.callbacks.progress import TQDMProgressBar

__all__ = ["TQDMProgressBar"]
