from ember.callbacks.model_checkpoint import ModelCheckpoint

__all__ = ["ModelCheckpoint"]
