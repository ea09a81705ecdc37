"""`lightning.pytorch.trainer` names."""

from ember.lightning.trainer import states


def __getattr__(name: str):
    if name == "Trainer":
        from ember.lightning import Trainer

        return Trainer
    raise AttributeError(f"module 'ember.lightning.trainer' has no attribute {name!r}")


__all__ = ["Trainer", "states"]
