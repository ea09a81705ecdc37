"""`lightning.pytorch.core` names."""

from ember.data import DataModule as LightningDataModule
from ember.module import Module as LightningModule

__all__ = ["LightningDataModule", "LightningModule"]
