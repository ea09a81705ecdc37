"""LambdaCallback: a callback made of functions, one per hook, without writing a class."""

from __future__ import annotations

from typing import Any, Callable

from ember.callbacks.base import HOOKS, Callback


class LambdaCallback(Callback):
    """Give each hook you need as a function taking the hook's arguments (`trainer, pl_module, ...`).

    Args:
        **hooks: hook name -> function, for any hook of `Callback` (`on_train_epoch_end=fn`, ...).

    Example:
        >>> ember.Trainer(callbacks=[LambdaCallback(on_train_epoch_end=lambda trainer, module: print("done"))])
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            what = "is not a hook" if len(unknown) == 1 else "are not hooks"
            raise TypeError(f"LambdaCallback got {', '.join(unknown)}, which {what}; hooks are: {', '.join(HOOKS)}.")
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback({name}={fn!r}): expected a function taking the hook's arguments.")
            setattr(self, name, fn)  # an instance attribute: the callback list calls it in that hook


__all__ = ["LambdaCallback"]
