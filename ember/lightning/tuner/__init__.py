"""`lightning.pytorch.tuner` names."""

from ember.lightning.tuner import tuning  # noqa: F401  (pl.tuner.tuning.Tuner)


def __getattr__(name: str):
    if name == "Tuner":
        from ember.tuner import Tuner

        return Tuner
    raise AttributeError(f"module 'ember.lightning.tuner' has no attribute {name!r}")
