"""`lightning.pytorch.callbacks.model_summary`."""

from ember.callbacks.summary import ModelSummary

__all__ = ["ModelSummary"]
