"""Callbacks: hooks into the loops. ModelCheckpoint and EarlyStopping always run last.

The callbacks that need an optional library (rich, psutil) import it when a run starts, not here.
"""

from ember.callbacks.accumulation import GradientAccumulationScheduler
from ember.callbacks.base import Callback, CallbackList
from ember.callbacks.device_stats import DeviceStatsMonitor
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.finders import BatchSizeFinder, LearningRateFinder
from ember.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from ember.callbacks.lambda_callback import LambdaCallback
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.on_exception import OnExceptionCheckpoint
from ember.callbacks.progress import ProgressBar, TQDMProgressBar
from ember.callbacks.rich_progress import RichModelSummary, RichProgressBar, RichProgressBarTheme
from ember.callbacks.summary import ModelSummary
from ember.callbacks.swa import StochasticWeightAveraging
from ember.callbacks.timer import Timer

__all__ = ["BackboneFinetuning", "BaseFinetuning", "BatchSizeFinder", "Callback", "CallbackList", "DeviceStatsMonitor",
           "EarlyStopping", "GradientAccumulationScheduler", "LambdaCallback", "LearningRateFinder",
           "LearningRateMonitor", "ModelCheckpoint", "ModelSummary", "OnExceptionCheckpoint", "ProgressBar",
           "RichModelSummary", "RichProgressBar", "RichProgressBarTheme", "StochasticWeightAveraging",
           "TQDMProgressBar", "Timer"]
