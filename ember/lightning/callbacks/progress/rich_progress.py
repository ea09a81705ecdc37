"""`lightning.pytorch.callbacks.progress.rich_progress`."""

from ember.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme

__all__ = ["RichProgressBar", "RichProgressBarTheme"]
