"""`lightning.pytorch.utilities.parsing`: AttributeDict, the type of `self.hparams`."""

from ember.attribute_dict import AttributeDict

__all__ = ["AttributeDict"]
