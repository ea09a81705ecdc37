"""Strategies: where the model runs and how processes talk. Every distributed branch lives here.

`SingleDevice` runs on one device. A DDP strategy (torch.distributed) implements the same methods:
the Trainer calls them and never asks whether the run is distributed.
"""

from ember.strategies.ddp import DDPStrategy, RankFailure
from ember.strategies.select import select_strategy
from ember.strategies.single import SingleDevice, Strategy, launched
from ember.strategies.spawn import DDPSpawnStrategy

__all__ = ["Strategy", "SingleDevice", "DDPStrategy", "DDPSpawnStrategy", "RankFailure", "launched",
           "select_strategy"]
