"""`lightning.pytorch.utilities.types`: the type names used in annotations of Lightning code."""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ember.optimizers import LRSchedulerConfig

STEP_OUTPUT = Union[torch.Tensor, Mapping[str, Any], None]
TRAIN_DATALOADERS = Any
EVAL_DATALOADERS = Union[DataLoader, Sequence[DataLoader]]
LRSchedulerTypeUnion = Union[torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau]
LRSchedulerType = type
LRSchedulerPLType = LRSchedulerTypeUnion
OptimizerLRSchedulerConfig = Mapping[str, Any]
OptimizerLRScheduler = Union[Optimizer, Sequence[Optimizer], tuple[Sequence[Optimizer], Sequence[Any]],
                             OptimizerLRSchedulerConfig, Sequence[OptimizerLRSchedulerConfig], None]

__all__ = ["EVAL_DATALOADERS", "LRSchedulerConfig", "LRSchedulerPLType", "LRSchedulerType", "LRSchedulerTypeUnion",
           "OptimizerLRScheduler", "OptimizerLRSchedulerConfig", "STEP_OUTPUT", "TRAIN_DATALOADERS"]
