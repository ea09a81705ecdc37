"""`lightning.pytorch.callbacks.lr_finder`."""

from ember.callbacks.finders import LearningRateFinder

__all__ = ["LearningRateFinder"]
