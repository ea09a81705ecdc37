"""`lightning.pytorch.callbacks.timer`."""

from ember.callbacks.timer import Timer

__all__ = ["Timer"]
