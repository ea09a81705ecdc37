"""`lightning.pytorch.callbacks` names."""

from ember.callbacks import (Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ModelSummary,
                             ProgressBar)

TQDMProgressBar = ProgressBar

__all__ = ["Callback", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "ModelSummary", "ProgressBar",
           "TQDMProgressBar"]
