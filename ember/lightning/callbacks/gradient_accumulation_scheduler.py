"""`lightning.pytorch.callbacks.gradient_accumulation_scheduler`."""

from ember.callbacks.accumulation import GradientAccumulationScheduler

__all__ = ["GradientAccumulationScheduler"]
