"""`lightning.pytorch.callbacks.on_exception_checkpoint`."""

from ember.callbacks.on_exception import OnExceptionCheckpoint

__all__ = ["OnExceptionCheckpoint"]
