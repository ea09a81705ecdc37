"""`lightning.pytorch.loggers` names; each backend imports its library when first used."""

from ember.loggers import CSVLogger, Logger


def __getattr__(name: str):
    import ember.loggers

    return getattr(ember.loggers, name)


__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]
