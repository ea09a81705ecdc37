from ember.callbacks.early_stopping import EarlyStopping

__all__ = ["EarlyStopping"]
