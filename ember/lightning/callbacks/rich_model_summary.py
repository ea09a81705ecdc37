"""`lightning.pytorch.callbacks.rich_model_summary`."""

from ember.callbacks.rich_progress import RichModelSummary

__all__ = ["RichModelSummary"]
