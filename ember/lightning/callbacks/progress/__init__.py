"""`lightning.pytorch.callbacks.progress`."""

from ember.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

__all__ = ["ProgressBar", "RichProgressBar", "TQDMProgressBar"]
