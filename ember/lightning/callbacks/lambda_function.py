"""`lightning.pytorch.callbacks.lambda_function`."""

from ember.callbacks.lambda_callback import LambdaCallback

__all__ = ["LambdaCallback"]
