"""Hyperparameters: `save_hyperparameters()` and `self.hparams` (shared by Module and DataModule), how a
checkpoint stores them, and how hparams.yaml shows them.

`self.hparams` holds the values as they were given. `save_hyperparameters` checks, when it is called,
that a checkpoint can hold each one and raises a TypeError naming the argument if not; an `nn.Module` or
callable argument (a network, a `functools.partial` optimizer from Hydra) stays in `self.hparams` but is
left out of checkpoints, with a warning (pass it again to `load_from_checkpoint`); hparams.yaml shows a
line describing it.
`load_from_checkpoint` gives every stored value back with its type.

The encoding of typed values is in `ember/plain.py`.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import copy
import inspect
import sys
import warnings
from typing import Any, Iterator, Mapping, Sequence

from torch import nn

from ember.attribute_dict import AttributeDict
from ember.plain import describe, from_plain, omegaconf_kind, readable, to_plain

__all__ = ["AttributeDict", "HyperparametersMixin", "from_plain", "passed_on_load", "readable", "stored", "to_plain"]

# the arguments load_from_checkpoint is passing to __init__ itself: leaving those out needs no warning
_PASSED_ON_LOAD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("ember_passed_on_load",
                                                                               default=frozenset())


class HyperparametersMixin:
    """`save_hyperparameters()` and `self.hparams`, shared by Module and DataModule."""

    # the checkpoint keys of the hyperparameters (Lightning's names and values)
    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a Lightning hook that ember's loop does not call is refused when the class is defined, instead of
        # being skipped in silence (docs/lightning-compat.md has the rows)
        if cls.__module__ in ("ember.module", "ember.data"):
            return
        from ember.lightning.not_supported import DATAMODULE_HOOKS, MODULE_HOOKS, refuse_unsupported_hooks

        for base_module, base_name, hooks in (("ember.module", "Module", MODULE_HOOKS),
                                              ("ember.data", "DataModule", DATAMODULE_HOOKS)):
            base = getattr(sys.modules.get(base_module), base_name, None)
            if base is not None and issubclass(cls, base):
                refuse_unsupported_hooks(cls, base, hooks)

    def __init__(self) -> None:
        super().__init__()
        self._hparams = AttributeDict()
        self._hparams_initial = AttributeDict()
        self._hparams_name: str | None = None
        self._log_hyperparams = False  # set by save_hyperparameters: with none saved, loggers get none

    def save_hyperparameters(self, *args: Any, ignore: Sequence[str] | str | None = None,
                             frame: Any = None, logger: bool = True) -> None:
        """Record hyperparameters in `self.hparams` (and in every checkpoint and logger).

        With no arguments, records every argument of the calling `__init__`. With names, only those
        arguments. With one dict, argparse Namespace or OmegaConf DictConfig, that object's items.

        Values keep their type, and `load_from_checkpoint` gives them back with it (see the module
        docstring for what a checkpoint can hold). A value it cannot hold raises a TypeError here. An
        `nn.Module` or a callable (function, class, functools.partial) is left out, with a warning
        unless it is the argument's default: pass it to `load_from_checkpoint(path, name=...)`.

        Args:
            *args: names of `__init__` arguments, or one dict / Namespace / DictConfig.
            ignore: argument names to leave out.
            frame: the frame whose `__init__` arguments to read (default: the caller's).
            logger: False: the loggers do not receive these hyperparameters (checkpoints still hold them).

        Example:
            >>> class Net(ember.Module):
            ...     def __init__(self, hidden=64, lr=1e-3):
            ...         super().__init__()
            ...         self.save_hyperparameters()      # self.hparams.hidden == 64
        """
        owner = type(self).__name__
        if isinstance(ignore, str):
            ignore = [ignore]
        ignore = set(ignore or ())
        frame = _init_frame(frame or inspect.currentframe().f_back)
        init_args = _init_args(frame)
        self._hparams_name = None
        if len(args) == 1 and not isinstance(args[0], str):
            for name, value in init_args.items():
                if value is args[0]:
                    self._hparams_name = name
            values = _items_of(args[0], owner)
        elif args:
            missing = [a for a in args if a not in init_args]
            if missing:
                raise ValueError(f"save_hyperparameters{args}: {missing} are not arguments of __init__ "
                                 f"(which has {sorted(init_args)}).")
            values = {a: init_args[a] for a in args}
        else:
            values = init_args
        values = {k: v for k, v in values.items() if k not in ignore}

        left_out = [k for k, v in values.items() if _left_out(v)]
        defaults = _init_defaults(frame)
        # note: an argument left at its default needs no note (loading builds it from the default again),
        # nor one that load_from_checkpoint is passing right now
        noted = [k for k in left_out if not (k in defaults and defaults[k] is values[k])
                 and k not in _PASSED_ON_LOAD.get()]
        loads = hasattr(type(self), "load_from_checkpoint")  # Module and DataModule both have it
        if noted:
            warnings.warn(_left_out_note(owner, noted, values, loads), stacklevel=2)
        for name, value in values.items():
            if name in left_out:
                continue
            try:
                to_plain(value, f"argument {name!r}")  # refuse now what a checkpoint could not hold later
            except TypeError as err:
                when = f" and pass it when loading: {owner}.load_from_checkpoint(path, {name}=...)" if loads else ""
                raise TypeError(f"{owner}.save_hyperparameters(): {err} Or leave the argument out with "
                                f"self.save_hyperparameters(ignore=[{name!r}]){when}.") from None
        self._log_hyperparams = logger
        self._hparams = AttributeDict(values)
        # (networks and callables are shared, not copied: a copy of a large network would cost memory)
        self._hparams_initial = AttributeDict({k: v if k in left_out else copy.deepcopy(v) for k, v in values.items()})

    @property
    def hparams(self) -> AttributeDict:
        return self._hparams

    def remove_ignored_hparams(self, ignore_list: Sequence[str]) -> None:
        """Forget hyperparameters a base class saved, from `self.hparams` (`hparams_initial` keeps them, as in
        Lightning)."""
        for name in ignore_list:
            self._hparams.pop(name, None)

    @property
    def hparams_initial(self) -> AttributeDict:
        return self._hparams_initial


def stored(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a checkpoint holds: all but networks and callables (see the module docstring)."""
    return {k: v for k, v in hparams.items() if not _left_out(v)}


def _left_out(value: Any) -> bool:
    return isinstance(value, nn.Module) or callable(value)


@contextlib.contextmanager
def passed_on_load(names: Sequence[str]) -> Iterator[None]:
    """While `load_from_checkpoint` builds a model with these arguments given, leaving them out of the
    hyperparameters needs no warning: the caller is doing what the warning asks."""
    token = _PASSED_ON_LOAD.set(frozenset(names))
    try:
        yield
    finally:
        _PASSED_ON_LOAD.reset(token)


def _init_frame(frame: Any) -> Any:
    """The frame of the `__init__` running in `frame`, or of the nearest `__init__` above it."""
    while frame is not None and frame.f_code.co_name != "__init__":
        frame = frame.f_back
    return frame


def _init_args(frame: Any) -> dict[str, Any]:
    """The arguments of the `__init__` running in `frame`."""
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


def _init_defaults(frame: Any) -> dict[str, Any]:
    """The default values of the `__init__` running in `frame` ({} when it cannot be found)."""
    if frame is None:
        return {}
    info = inspect.getargvalues(frame)
    owner = info.locals.get(info.args[0]) if info.args else None
    for klass in type(owner).__mro__:
        init = vars(klass).get("__init__")
        if getattr(init, "__code__", None) is frame.f_code:
            return {name: p.default for name, p in inspect.signature(init).parameters.items()
                    if p.default is not p.empty}
    return {}


def _items_of(obj: Any, owner: str) -> dict[str, Any]:
    """The items of the one object given to `save_hyperparameters(obj)`."""
    if isinstance(obj, argparse.Namespace):
        items = dict(vars(obj))
    elif omegaconf_kind(obj) == "DictConfig":
        from omegaconf import OmegaConf

        # note: the top-level items keep their config type, so that `cfg.model.lr` still reads
        container = OmegaConf.to_container(obj, resolve=True)
        items = {k: OmegaConf.create(v) if isinstance(v, (dict, list)) else v for k, v in container.items()}
    elif isinstance(obj, Mapping):
        items = dict(obj)
    else:
        raise TypeError(
            f"{owner}.save_hyperparameters({type(obj).__name__}): expected a dict, an argparse Namespace or "
            "an OmegaConf DictConfig (its items become the hyperparameters), or names of __init__ "
            "arguments as strings, e.g. self.save_hyperparameters('lr', 'hidden').")
    not_names = [k for k in items if not isinstance(k, str)]
    if not_names:
        raise TypeError(f"{owner}.save_hyperparameters({type(obj).__name__}): its keys become hyperparameter "
                        f"names, so they must be strings; got {not_names}. Nest it under a name instead: "
                        "self.save_hyperparameters({'table': obj}).")
    return items


def _left_out_note(owner: str, names: list[str], values: Mapping[str, Any], loads: bool) -> str:
    listed = ", ".join(f"{name!r} ({describe(values[name])})" for name in names)
    kwargs = ", ".join(f"{name}=..." for name in names)
    them = "it" if len(names) == 1 else "them"
    when = f"Pass {them} again when loading: {owner}.load_from_checkpoint(path, {kwargs}). " if loads else ""
    return (f"{owner}.save_hyperparameters() left out {listed}: a checkpoint holds no modules or callables. "
            f"{when}self.save_hyperparameters(ignore={names!r}) says so and silences this warning.")


