"""`lightning.pytorch.utilities.seed`."""

from ember.seed import isolate_rng

__all__ = ["isolate_rng"]
