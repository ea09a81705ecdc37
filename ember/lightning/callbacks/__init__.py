"""`lightning.pytorch.callbacks` names. Those ember lacks raise NotSupportedError with the reason."""

from ember.callbacks import (BackboneFinetuning, BaseFinetuning, BatchSizeFinder, Callback, DeviceStatsMonitor,
                             EarlyStopping, GradientAccumulationScheduler, LambdaCallback, LearningRateFinder,
                             LearningRateMonitor, ModelCheckpoint, ModelSummary, OnExceptionCheckpoint, ProgressBar,
                             RichModelSummary, RichProgressBar, StochasticWeightAveraging, Timer, TQDMProgressBar)
from ember.lightning.not_supported import module_getattr

__getattr__ = module_getattr("ember.lightning.callbacks")

__all__ = ["BackboneFinetuning", "BaseFinetuning", "BatchSizeFinder", "Callback", "DeviceStatsMonitor",
           "EarlyStopping", "GradientAccumulationScheduler", "LambdaCallback", "LearningRateFinder",
           "LearningRateMonitor", "ModelCheckpoint", "ModelSummary", "OnExceptionCheckpoint", "ProgressBar",
           "RichModelSummary", "RichProgressBar", "StochasticWeightAveraging", "TQDMProgressBar", "Timer"]
