"""`lightning.pytorch.core.module`, the path some code imports LightningModule from."""

from ember.module import Module as LightningModule

__all__ = ["LightningModule"]
