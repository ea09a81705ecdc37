"""`lightning.pytorch.callbacks.finetuning`."""

from ember.callbacks.finetuning import BackboneFinetuning, BaseFinetuning, multiplicative

__all__ = ["BackboneFinetuning", "BaseFinetuning", "multiplicative"]
