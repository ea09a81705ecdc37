"""Callbacks: hooks into the loops. ModelCheckpoint and EarlyStopping always run last."""

from ember.callbacks.base import Callback, CallbackList
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.progress import ProgressBar
from ember.callbacks.summary import ModelSummary

__all__ = ["Callback", "CallbackList", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "ModelSummary",
           "ProgressBar"]
