"""`lightning.pytorch.callbacks.lr_monitor`."""

from ember.callbacks.lr_monitor import LearningRateMonitor

__all__ = ["LearningRateMonitor"]
