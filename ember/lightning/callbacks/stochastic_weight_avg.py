"""`lightning.pytorch.callbacks.stochastic_weight_avg`."""

from ember.callbacks.swa import StochasticWeightAveraging

__all__ = ["StochasticWeightAveraging"]
