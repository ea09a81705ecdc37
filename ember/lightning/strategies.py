"""`lightning.pytorch.strategies` names on ember's strategies (torch.distributed underneath)."""

from ember.strategies import DDPSpawnStrategy, DDPStrategy, SingleDevice as SingleDeviceStrategy, Strategy

__all__ = ["DDPSpawnStrategy", "DDPStrategy", "SingleDeviceStrategy", "Strategy"]
