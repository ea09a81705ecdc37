"""`lightning.pytorch.loggers` names; each backend imports its library when first used. Loggers ember lacks
raise NotSupportedError with the reason."""

from ember.lightning.not_supported import module_getattr
from ember.loggers import CSVLogger, Logger

__getattr__ = module_getattr("ember.lightning.loggers", {
    "TensorBoardLogger": "ember.loggers.tensorboard:TensorBoardLogger",
    "MLFlowLogger": "ember.loggers.mlflow:MLFlowLogger",
    "WandbLogger": "ember.loggers.wandb:WandbLogger",
})

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]
