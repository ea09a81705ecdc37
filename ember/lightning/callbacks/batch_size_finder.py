"""`lightning.pytorch.callbacks.batch_size_finder`."""

from ember.callbacks.finders import BatchSizeFinder

__all__ = ["BatchSizeFinder"]
