"""`lightning.pytorch.callbacks.progress.progress_bar`."""

from ember.callbacks.progress import ProgressBar

__all__ = ["ProgressBar"]
