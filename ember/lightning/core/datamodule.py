"""`lightning.pytorch.core.datamodule`."""

from ember.data import DataModule as LightningDataModule

__all__ = ["LightningDataModule"]
