"""`lightning.pytorch.utilities.model_summary`: the summary table as text."""

from ember.callbacks.summary import summarize

__all__ = ["summarize"]
