"""Config at the edge: check a composed config, then build the Trainer, Module, DataModule, callbacks and
loggers from it.

Every `_target_` is checked against an allowlist *as a string*, before anything is imported: `ember`,
`torch` and `torchmetrics`, plus the packages the user names (`allow: [mypkg]`) and the package that holds
their config folder. Trainer keys are checked against `ember.Trainer.__init__`'s signature.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Iterable, Iterator

ALLOWED_ALWAYS = ("ember", "torch", "torchmetrics")
# keys the experiment layer fills itself; a config that sets them under `trainer:` is told where they go
TRAINER_KEYS_SET_HERE = {"callbacks": "callbacks/", "logger": "logger/", "default_root_dir": "paths.output_dir"}


TUNER_ARGUMENTS_SET_HERE = ("self", "model", "train_dataloaders", "val_dataloaders", "dataloaders", "datamodule")


class ConfigError(ValueError):
    """A config that cannot run: what was given, what was expected, the fix."""


def trainer_arguments() -> list[str]:
    from ember.trainer import Trainer

    return [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]


def check_trainer_keys(trainer_cfg: dict[str, Any], valid: Iterable[str]) -> None:
    """Every key under `trainer:` is an argument of `ember.Trainer`; the message names the nearest one."""
    valid = list(valid)
    for key in trainer_cfg:
        if key in TRAINER_KEYS_SET_HERE:
            raise ConfigError(f"trainer.{key} is set by the experiment layer from the {TRAINER_KEYS_SET_HERE[key]} "
                              f"config; remove trainer.{key} and use {TRAINER_KEYS_SET_HERE[key]} instead.")
    check_arguments(trainer_cfg, valid, "trainer", "ember.Trainer")


def check_arguments(given: Iterable[str], valid: list[str], prefix: str, owner: str) -> None:
    """Every key of `given` is in `valid` (the arguments of `owner`); the message names the nearest one."""
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {prefix}.{close[0]}?" if close else ""
            raise ConfigError(f"{prefix}.{key}: {owner} has no argument {key!r}.{hint} "
                              f"Valid {prefix} keys: {', '.join(valid)}.")


def check_tune_keys(tune_cfg: dict[str, Any]) -> None:
    """`tune.lr_find` / `tune.scale_batch_size` hold arguments of the Tuner's methods of those names."""
    from ember.tuner import Tuner

    for step, kwargs in tune_cfg.items():
        method = getattr(Tuner, step, None) if step in ("lr_find", "scale_batch_size") else None
        if method is None:
            raise ConfigError(f"tune.{step}: expected tune.lr_find or tune.scale_batch_size.")
        if kwargs is None:
            continue
        if not isinstance(kwargs, dict):
            raise ConfigError(f"tune.{step} = {kwargs!r}: expected a dict of arguments of Tuner.{step} or null.")
        valid = [p for p in inspect.signature(method).parameters if p not in TUNER_ARGUMENTS_SET_HERE]
        check_arguments(kwargs, valid, f"tune.{step}", f"Tuner.{step}")


def targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(config key, `_target_` string) for every `_target_` in a plain (resolved) config tree."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield (key or "<root>"), node["_target_"]
        for name, value in node.items():
            yield from targets(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from targets(value, f"{key}[{i}]")


def config_package(config_dir: str | Path) -> str | None:
    """The importable package a config folder lives in (`.../mypkg/configs` -> `mypkg`), if any."""
    parent = Path(config_dir).resolve().parent
    if not (parent / "__init__.py").exists():
        return None
    names = [parent.name]
    while (parent.parent / "__init__.py").exists():
        parent = parent.parent
        names.insert(0, parent.name)
    return names[0]


def check_targets(cfg: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse any `_target_` outside the allowed top-level packages, naming the key and how to allow it."""
    allowed = tuple(dict.fromkeys([*ALLOWED_ALWAYS, *allowed]))
    for key, target in targets(cfg):
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{key}._target_ = {target!r}: expected a dotted name such as 'mypkg.model.Net'.")
        package = target.split(".")[0]
        if package not in allowed:
            raise ConfigError(
                f"{key}._target_ = {target!r} is not allowed: ember imports targets only from "
                f"{', '.join(allowed)}. If you trust {package!r}, allow it in your config (`allow: [{package}]`) "
                f"or on the command line (`'allow=[{package}]'`).")


def instantiate(node: Any) -> Any:
    """hydra.utils.instantiate, for a node already checked by `check_targets`."""
    from hydra.utils import instantiate as hydra_instantiate

    return hydra_instantiate(node, _convert_="partial")


def build(cfg: Any, output_dir: str | Path, allowed: Iterable[str] = (), extra_callbacks: Iterable[Any] = ()
          ) -> tuple[Any, Any, Any]:
    """(trainer, module, datamodule) from a composed config (an OmegaConf node), checks first; `extra_callbacks`
    (the experiment layer's own, e.g. Optuna pruning) come after the configured ones."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    check_config(plain, allowed)
    import ember

    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer_kwargs = plain.get("trainer") or {}
    without_logger = not loggers or trainer_kwargs.get("fast_dev_run")
    # LearningRateMonitor writes only to loggers: a run with none (logger=none, trainer=fdr) leaves it out
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None
                 and not (without_logger and str(c.get("_target_", "")).endswith("LearningRateMonitor"))]
    if cfg.get("seed") is not None:
        ember.seed_everything(int(cfg.seed))
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data) if cfg.get("data") is not None else None
    trainer = ember.Trainer(**trainer_kwargs, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False,
                            default_root_dir=str(output_dir))
    return trainer, module, datamodule


def check_config(plain: dict[str, Any], allowed: Iterable[str] = ()) -> None:
    """All checks that need no import beyond ember: a model, known trainer keys, allowed targets."""
    if plain.get("model") is None:
        raise ConfigError("no model: the config has no `model:` node. Add a model/ config group in your config "
                          "folder (model/mymodel.yaml with `_target_: mypkg.MyModule`) and pick it: `model=mymodel` "
                          "or an experiment=... that does.")
    check_trainer_keys(plain.get("trainer") or {}, trainer_arguments())
    check_tune_keys(plain.get("tune") or {})
    user_allowed = plain.get("allow") or []
    if isinstance(user_allowed, str):
        user_allowed = [user_allowed]
    check_targets(plain, [*allowed, *user_allowed])
