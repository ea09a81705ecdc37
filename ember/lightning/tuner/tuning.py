"""`pytorch_lightning.tuner.tuning.Tuner`, the path older code imports from."""


def __getattr__(name: str):
    if name == "Tuner":
        from ember.tuner import Tuner

        return Tuner
    raise AttributeError(f"module 'ember.lightning.tuner.tuning' has no attribute {name!r}")
