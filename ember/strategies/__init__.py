"""Strategies: where the model runs and how processes talk. Every distributed branch lives here.

`SingleDevice` runs on one device. A DDP strategy (torch.distributed) implements the same methods:
the Trainer calls them and never asks whether the run is distributed.
"""

from ember.strategies.ddp import DDPStrategy, RankFailure
from ember.strategies.select import select_strategy
from ember.strategies.single import SingleDevice, Strategy

__all__ = ["Strategy", "SingleDevice", "DDPStrategy", "RankFailure", "select_strategy"]
