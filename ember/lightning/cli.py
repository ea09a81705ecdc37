"""LightningCLI on ember: a command line (and YAML config) for a Module, a DataModule and the Trainer.

    python train.py fit --config config.yaml --trainer.max_epochs 5 --optimizer Adam --optimizer.lr 0.01
    python train.py fit --print_config > config.yaml

It is built on jsonargparse, an extra (`pip install 'ember[cli]'`) imported when a CLI is made, not when
this module is. The subcommands are `fit`, `validate`, `test` and `predict`; each takes `--config`,
`--print_config`, `--seed_everything`, `--trainer.*`, `--model.*` (`--model.class_path` in subclass mode),
`--data.*`, `--optimizer` / `--lr_scheduler` (a class path and `.init_args`) and the Trainer method's own
arguments (`--ckpt_path`, `--verbose`, ...). `SaveConfigCallback` writes the full config to the run's log
folder as `config.yaml`, so a run can be repeated with `--config` on that file.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from types import MethodType
from typing import Any, Optional, Union

import torch

from ember._logging import log
from ember.callbacks.base import Callback
from ember.data import DataModule
from ember.module import Module
from ember.seed import seed_everything

_EXTRA = "pip install 'ember[cli]'"
SUBCOMMANDS: dict[str, set[str]] = {
    # the Trainer method of each subcommand, and the arguments the CLI fills itself
    "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
    "validate": {"model", "dataloaders", "datamodule"},
    "test": {"model", "dataloaders", "datamodule"},
    "predict": {"model", "dataloaders", "datamodule"},
}
LRSchedulerTypeTuple = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _jsonargparse() -> Any:
    try:
        import jsonargparse
    except ImportError as err:
        raise ImportError(f"LightningCLI reads its arguments and configs with jsonargparse, which is not "
                          f"installed: {_EXTRA}") from err
    return jsonargparse


def _default_trainer_class() -> type:
    # ember's Trainer with Lightning's default logger (TensorBoard, else CSV, under lightning_logs/), so that a
    # CLI script's logs and checkpoints land where Lightning's CLI puts them; its arguments are ember.Trainer's,
    # Lightning 2.x's (the 1.x ones ember.lightning.Trainer also takes would only clutter --help and configs)
    from ember.trainer import Trainer

    class CLITrainer(Trainer):
        __doc__ = Trainer.__doc__
        _default_logger = "lightning"

    return CLITrainer


_PARSER_CLASS: type | None = None


def _parser_class() -> type:
    """LightningArgumentParser: jsonargparse's parser with Lightning's helpers (made once jsonargparse is there)."""
    global _PARSER_CLASS
    if _PARSER_CLASS is not None:
        return _PARSER_CLASS
    jsonargparse = _jsonargparse()

    class LightningArgumentParser(jsonargparse.ArgumentParser):
        """A jsonargparse parser that knows Lightning's argument groups (trainer, model, data, optimizers)."""

        def __init__(self, *args: Any, description: str = "ember command line tool", env_prefix: str = "PL",
                     default_env: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env,
                             **kwargs)
            self._optimizers: dict[str, tuple[Any, str]] = {}
            self._lr_schedulers: dict[str, tuple[Any, str]] = {}

        def add_lightning_class_args(self, lightning_class: Any, nested_key: str, subclass_mode: bool = False,
                                     required: bool = True) -> list[str]:
            """Add the `__init__` arguments of a Trainer, Module, DataModule or Callback class under `nested_key`
            (or, in subclass mode, `--<nested_key>.class_path` and `.init_args` of any subclass)."""
            if callable(lightning_class) and not isinstance(lightning_class, type):
                lightning_class = jsonargparse.class_from_function(lightning_class)
            if isinstance(lightning_class, type) and issubclass(lightning_class, _trainer_base()):
                return self._add_trainer_args(lightning_class, nested_key)
            if subclass_mode:
                return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False,
                                                   required=required)
            return self.add_class_arguments(lightning_class, nested_key, fail_untyped=False, instantiate=True,
                                            sub_configs=True)

        def _add_trainer_args(self, trainer_class: type, nested_key: str) -> list[str]:
            # ember's Trainer annotates these two as Any; typed here so class paths in them are instantiated
            added = self.add_class_arguments(trainer_class, nested_key, fail_untyped=False, instantiate=False,
                                             sub_configs=True, skip={"callbacks", "logger"})
            from ember.loggers import Logger

            self.add_argument(f"--{nested_key}.callbacks", type=Optional[Union[list[Callback], Callback]],
                              default=None, help="Callbacks: class paths with init_args.")
            self.add_argument(f"--{nested_key}.logger", type=Optional[Union[bool, Logger, list[Logger]]],
                              default=None, help="A logger (class path), a list of them, or false.")
            return added

        def add_optimizer_args(self, optimizer_class: Any = (torch.optim.Optimizer,), nested_key: str = "optimizer",
                               link_to: str = "AUTOMATIC") -> None:
            """`--optimizer <class path> --optimizer.<arg> value` (built with the model's parameters)."""
            classes = optimizer_class if isinstance(optimizer_class, tuple) else (optimizer_class,)
            self.add_subclass_arguments(classes, nested_key, fail_untyped=False, instantiate=False,
                                        skip={"params"}, required=False)
            self._optimizers[nested_key] = (optimizer_class, link_to)

        def add_lr_scheduler_args(self, lr_scheduler_class: Any = LRSchedulerTypeTuple,
                                  nested_key: str = "lr_scheduler", link_to: str = "AUTOMATIC") -> None:
            """`--lr_scheduler <class path> --lr_scheduler.<arg> value` (built on the optimizer)."""
            classes = lr_scheduler_class if isinstance(lr_scheduler_class, tuple) else (lr_scheduler_class,)
            self.add_subclass_arguments(classes, nested_key, fail_untyped=False, instantiate=False,
                                        skip={"optimizer"}, required=False)
            self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    _PARSER_CLASS = LightningArgumentParser
    return LightningArgumentParser


def _trainer_base() -> type:
    from ember.trainer import Trainer

    return Trainer


class SaveConfigCallback(Callback):
    """Write the CLI's full config to `<trainer.log_dir>/config.yaml` when the run sets up (process 0 only).

    Args:
        parser, config: the CLI's parser and the parsed config of the subcommand.
        config_filename: the file's name.
        overwrite: replace an existing file; without it an existing file raises, since it most likely belongs
            to another run.
        multifile: save nested configs in their own files, as they were given.
        save_to_log_dir: write the file (False: only call `save_config`, to send it elsewhere).

    Example:
        >>> class LogConfig(SaveConfigCallback):
        ...     def save_config(self, trainer, pl_module, stage):
        ...         trainer.logger.log_hyperparams({"config": self.parser.dump(self.config)})
    """

    def __init__(self, parser: Any, config: Any, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = True) -> None:
        self.parser, self.config = parser, config
        self.config_filename, self.overwrite, self.multifile = config_filename, overwrite, multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError("SaveConfigCallback(save_to_log_dir=False) saves nothing unless a subclass defines "
                             "save_config(trainer, pl_module, stage).")

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir
            path = os.path.join(log_dir, self.config_filename)
            if not self.overwrite and os.path.exists(path):
                raise RuntimeError(
                    f"SaveConfigCallback would overwrite {path}, which a previous run wrote. Give this run its "
                    "own folder (--trainer.default_root_dir, or the logger's version), or pass "
                    "save_config_kwargs={'overwrite': True} to LightningCLI.")
            if trainer.is_global_zero:
                os.makedirs(log_dir, exist_ok=True)
                self.parser.save(self.config, path, skip_none=False, overwrite=self.overwrite,
                                 multifile=self.multifile)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True

    def save_config(self, trainer, pl_module, stage: str) -> None:
        """Override to send the config somewhere else as well (a logger's artifact store, ...)."""


class LightningCLI:
    """Parse the command line (and configs), build the model, the datamodule and the Trainer, and run the
    subcommand.

    Args:
        model_class: the Module class, or a function returning a Module; None: any subclass, chosen with
            `--model.class_path` (also when `subclass_mode_model`).
        datamodule_class: the DataModule class (or None: no `--data`); `subclass_mode_data` likewise.
        save_config_callback: the callback that writes config.yaml (None: none).
        save_config_kwargs: its arguments (`overwrite`, `config_filename`, `multifile`, ...).
        trainer_class: the Trainer class (default: `ember.Trainer` with Lightning's default logger).
        trainer_defaults: Trainer arguments used unless the command line or a config sets them (callbacks
            given here are added to those configured).
        seed_everything_default: the seed (int), True for a random one (written to the config), or
            False/None for no seeding.
        parser_kwargs: arguments of the parser(s); a dict keyed by subcommand gives each its own.
        args: the arguments to parse in place of `sys.argv[1:]` (a list, or a dict / config).
        run: with True, parse a subcommand and run it; with False, only build `self.model`,
            `self.datamodule` and `self.trainer` from the arguments (no subcommand).
        auto_configure_optimizers: add `--optimizer` and `--lr_scheduler`; when given, they replace the
            model's `configure_optimizers`.

    Attributes:
        config, config_init: the parsed config, and the same with the classes built.
        model, datamodule, trainer: what the run uses.

    Example:
        >>> # train.py
        >>> LightningCLI(Classifier, MNISTData)
        $ python train.py fit --config config.yaml --trainer.max_epochs 3
    """

    def __init__(self, model_class: Any = None, datamodule_class: Any = None,
                 save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
                 save_config_kwargs: dict[str, Any] | None = None, trainer_class: Any = None,
                 trainer_defaults: dict[str, Any] | None = None, seed_everything_default: bool | int = True,
                 parser_kwargs: dict[str, Any] | None = None, parser_class: Any = None,
                 subclass_mode_model: bool = False, subclass_mode_data: bool = False,
                 args: Any = None, run: bool = True, auto_configure_optimizers: bool = True,
                 load_from_checkpoint_support: bool = True) -> None:
        _jsonargparse()
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class or _default_trainer_class()
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class or _parser_class()
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class or Module
        self._model_class = model_class
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class = datamodule_class
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data
        if load_from_checkpoint_support is False:
            log.debug("LightningCLI(load_from_checkpoint_support=False): ember has no such step to turn off.")

        main_kwargs, sub_kwargs = self._split_parser_kwargs(run)
        self.setup_parser(run, main_kwargs, sub_kwargs)
        self.parse_arguments(self.parser, args)
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # --- the parser -----------------------------------------------------------------------------------

    def _split_parser_kwargs(self, run: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        if set(self.parser_kwargs) & set(SUBCOMMANDS):
            main = {k: v for k, v in self.parser_kwargs.items() if k not in SUBCOMMANDS}
            return main, {k: v for k, v in self.parser_kwargs.items() if k in SUBCOMMANDS}
        return ({}, {name: self.parser_kwargs for name in SUBCOMMANDS}) if run else (self.parser_kwargs, {})

    def init_parser(self, **kwargs: Any) -> Any:
        """A parser with `-c/--config` (which brings `--print_config`)."""
        jsonargparse = _jsonargparse()
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=jsonargparse.ActionConfigFile,
                            help="A YAML config file; several may be given, later ones win.")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
                            help="The seed of seed_everything (true: a random one, written to the config; "
                                 "false: no seeding).")

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self.model_class, "model", subclass_mode=self.subclass_mode_model)
        # without a datamodule class, `--data` is optional: the model's own *_dataloader methods may be the data
        parser.add_lightning_class_args(self.datamodule_class or DataModule, "data",
                                        subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Override to add arguments or links (`parser.link_arguments("data.num_classes", "model.num_classes")`)."""

    def _add_arguments(self, parser: Any) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:
                parser.add_optimizer_args((torch.optim.Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: Any) -> None:
        """Link the optimizer and scheduler groups added with a `link_to` target (not 'AUTOMATIC') to it, so
        `--optimizer` fills, say, `--model.optimizer_init`."""
        for key, (_, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to != "AUTOMATIC":
                parser.link_arguments(key, link_to)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the Trainer method arguments the CLI fills itself."""
        return {name: set(skip) for name, skip in SUBCOMMANDS.items()}

    def _add_subcommands(self, parser: Any, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, Any] = {}
        subcommands = parser.add_subcommands()
        for name, skip in self.subcommands().items():
            method = getattr(self.trainer_class, name)
            subparser = self.init_parser(**kwargs.get(name, {}))
            self._add_arguments(subparser)
            added = subparser.add_method_arguments(self.trainer_class, name, skip=skip, fail_untyped=False)
            self._subcommand_method_arguments[name] = added
            self._subcommand_parsers[name] = subparser
            summary = (method.__doc__ or "").strip().splitlines()[0] if method.__doc__ else f"Run {name}."
            subcommands.add_subcommand(name, subparser, help=summary)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        if isinstance(args, dict) or (args is not None and not isinstance(args, (list, tuple))):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(list(args) if args is not None else sys.argv[1:])

    # --- building -------------------------------------------------------------------------------------

    def _sub(self, config: Any) -> Any:
        return config[self.subcommand] if self.subcommand is not None else config

    def _parser(self, subcommand: str | None) -> Any:
        return self._subcommand_parsers[subcommand] if subcommand is not None else self.parser

    def _set_seed(self) -> None:
        config = self._sub(self.config)
        seed = config.get("seed_everything")
        if seed is None or seed is False:
            return
        if seed is True:
            seed = seed_everything(None, workers=True, verbose=False)
            config["seed_everything"] = seed  # the config written for this run repeats it
        else:
            seed_everything(int(seed), workers=True)

    def before_instantiate_classes(self) -> None:
        """Override to change `self.config` before the classes are built."""

    def after_instantiate_classes(self) -> None:
        """Override to change `self.model`, `self.datamodule` or `self.trainer` once they are built."""

    def instantiate_classes(self) -> None:
        parser = self._parser(self.subcommand)
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        self.config_init = instantiate(self.config) if self.subcommand is None else \
            self.config.clone()
        if self.subcommand is not None:
            self.config_init[self.subcommand] = instantiate(self.config[self.subcommand])
        config = self._sub(self.config_init)
        self.datamodule = config.get("data")
        self.model = config["model"]
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The Trainer from `trainer.*`, with the default callbacks and the SaveConfigCallback added."""
        options = dict(self._sub(self.config_init)["trainer"])
        options.update(kwargs)
        callbacks = options.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        defaults = self.trainer_defaults.get("callbacks") or []
        callbacks += list(defaults) if isinstance(defaults, (list, tuple)) else [defaults]
        if self.save_config_callback is not None and self.subcommand is not None:
            parser = self._parser(self.subcommand)
            callbacks.append(self.save_config_callback(parser, self.config[self.subcommand],
                                                       **self.save_config_kwargs))
        options["callbacks"] = callbacks
        return self.trainer_class(**{k: v for k, v in options.items() if v is not None or k == "logger"})

    @staticmethod
    def configure_optimizers(lightning_module: Module, optimizer: torch.optim.Optimizer,
                             lr_scheduler: Any = None) -> Any:
        """What the model's `configure_optimizers` returns when `--optimizer` (and `--lr_scheduler`) are given."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = getattr(lr_scheduler, "monitor", None)
            if monitor is None:
                raise ValueError("--lr_scheduler ReduceLROnPlateau needs the key it watches; ember's CLI has no "
                                 "`monitor` argument for it. Return it from configure_optimizers with "
                                 "{'monitor': 'val_loss'} instead.")
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "monitor": monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)
        automatic = [key for key, (_, link) in parser._optimizers.items() if link == "AUTOMATIC"]
        schedulers = [key for key, (_, link) in parser._lr_schedulers.items() if link == "AUTOMATIC"]
        if len(automatic) > 1 or len(schedulers) > 1:
            raise ValueError(f"LightningCLI builds configure_optimizers from one optimizer and one scheduler group; "
                             f"found {automatic + schedulers}. Link the groups yourself and define "
                             "configure_optimizers on the model.")
        config = self._sub(self.config_init)
        optimizer_init = config.get(automatic[0]) if automatic else None
        if not optimizer_init:
            return
        scheduler_init = config.get(schedulers[0]) if schedulers else None
        if type(self.model).configure_optimizers is not Module.configure_optimizers:
            log.warning("%s.configure_optimizers is replaced by the --optimizer/--lr_scheduler given to %s.",
                        type(self.model).__name__, type(self).__name__)
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        method = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        self.model.configure_optimizers = MethodType(method, self.model)

    # --- running --------------------------------------------------------------------------------------

    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        method = getattr(self.trainer, subcommand)
        method(**self._prepare_subcommand_kwargs(subcommand))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        config = self.config_init[subcommand]
        kwargs = {name: config[name] for name in self._subcommand_method_arguments[subcommand] if name in config}
        kwargs["model"] = self.model
        kwargs["datamodule"] = self.datamodule
        return kwargs


def instantiate_class(args: Any, init: dict[str, Any]) -> Any:
    """Build `init["class_path"]` with `args` (one value or a tuple) and `init["init_args"]`.

    Example:
        >>> instantiate_class(model.parameters(), {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}})
    """
    import importlib

    module_name, _, class_name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    args = args if isinstance(args, tuple) else (args,)
    return cls(*args, **dict(init.get("init_args") or {}))


def __getattr__(name: str) -> Any:
    if name == "LightningArgumentParser":
        return _parser_class()
    raise AttributeError(f"module 'ember.lightning.cli' has no attribute {name!r}")


__all__ = ["LightningArgumentParser", "LightningCLI", "SaveConfigCallback", "instantiate_class"]
