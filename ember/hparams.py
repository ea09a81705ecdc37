"""Hyperparameters: `save_hyperparameters()` and `self.hparams`, shared by Module and DataModule."""

from __future__ import annotations

import copy
import inspect
from argparse import Namespace
from typing import Any, Sequence

from torch import nn

from ember.checkpoint import to_plain


class AttributeDict(dict):
    """A dict whose keys are also attributes: `hparams.lr` and `hparams["lr"]`."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"hparams has no {key!r}; it has {sorted(self)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


class HyperparametersMixin:
    """`save_hyperparameters()` and `self.hparams`, shared by Module and DataModule."""

    def __init__(self) -> None:
        super().__init__()
        self._hparams = AttributeDict()
        self._hparams_initial = AttributeDict()
        self._hparams_name: str | None = None

    def save_hyperparameters(self, *args: Any, ignore: Sequence[str] | str | None = None,
                             frame: Any = None, logger: bool = True) -> None:
        """Record hyperparameters in `self.hparams` (and in every checkpoint and logger).

        With no arguments, records every argument of the calling `__init__`. With names, only those
        arguments. With one dict, argparse Namespace or OmegaConf config, that object's contents.

        Example:
            >>> class Net(ember.Module):
            ...     def __init__(self, hidden=64, lr=1e-3):
            ...         super().__init__()
            ...         self.save_hyperparameters()      # self.hparams.hidden == 64
        """
        if isinstance(ignore, str):
            ignore = [ignore]
        ignore = set(ignore or ())
        frame = frame or inspect.currentframe().f_back
        init_args = _init_args(frame)
        self._hparams_name = None
        if len(args) == 1 and not isinstance(args[0], str):
            values = args[0]
            for name, value in init_args.items():
                if value is values:
                    self._hparams_name = name
            values = to_plain(vars(values) if isinstance(values, Namespace) else values)
            if not isinstance(values, dict):
                raise TypeError(f"save_hyperparameters({type(args[0]).__name__}) expects a dict, an argparse "
                                "Namespace or an OmegaConf config, or argument names as strings.")
        elif args:
            missing = [a for a in args if a not in init_args]
            if missing:
                raise ValueError(f"save_hyperparameters{args}: {missing} are not arguments of __init__ "
                                 f"(which has {sorted(init_args)}).")
            values = {a: init_args[a] for a in args}
        else:
            values = init_args
        values = {k: v for k, v in values.items() if k not in ignore and not isinstance(v, nn.Module)}
        plain = to_plain(values)
        self._hparams = AttributeDict(plain)
        self._hparams_initial = AttributeDict(copy.deepcopy(plain))

    @property
    def hparams(self) -> AttributeDict:
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        return self._hparams_initial


def _init_args(frame: Any) -> dict[str, Any]:
    """The arguments of the `__init__` running in `frame` (or of the nearest `__init__` above it)."""
    while frame is not None and frame.f_code.co_name != "__init__":
        frame = frame.f_back
    if frame is None:
        return {}
    info = inspect.getargvalues(frame)
    values = {name: info.locals[name] for name in info.args[1:] if name in info.locals}
    if info.varargs and info.locals.get(info.varargs):
        values[info.varargs] = list(info.locals[info.varargs])
    if info.keywords:
        values.update(info.locals.get(info.keywords, {}))
    values.pop("__class__", None)
    return values
