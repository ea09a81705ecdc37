"""Module: a `torch.nn.Module` that also says what one training step does.

Every hook has a no-op default; the Trainer calls them in the order documented in docs/hooks.md.
"""

from __future__ import annotations

import inspect
import warnings
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from ember.checkpoint import CheckpointError, load_checkpoint, load_weights
from ember.data import move_to_device
from ember.hparams import AttributeDict, HyperparametersMixin, passed_on_load
from ember.logs import is_metric
from ember.optimizers import ManualOptimizationMixin
from ember.plain import TAG, from_plain, readable

if TYPE_CHECKING:
    from ember.trainer import Trainer


class Module(ManualOptimizationMixin, HyperparametersMixin, nn.Module):
    """A model plus what one step of training, validation, test and prediction does.

    Example:
        >>> class Classifier(ember.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Linear(4, 2)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         loss = F.cross_entropy(self.net(x), y)
        ...         self.log("train_loss", loss, prog_bar=True)
        ...         return loss
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=1e-3)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._automatic_optimization = True
        self._warned_log_without_trainer = False
        self._toggled_requires_grad: dict[nn.Parameter, bool] | None = None  # set by toggle_optimizer
        self._metric_paths: dict[int, str] = {}  # id of each torchmetrics Metric attribute -> its path
        self.example_input_array: Any = None  # an input for loggers' log_graph and for export

    # --- what the Trainer and the user read -----------------------------------------------------

    @property
    def trainer(self) -> "Trainer":
        if self._trainer is None:
            raise AttributeError("trainer")  # __getattr__ below gives the message
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: "Trainer | None") -> None:
        self._trainer = trainer

    def __getattr__(self, name: str) -> Any:
        # `self.layer` in a step ends here (nn.Module keeps submodules, parameters and buffers out of the
        # instance dict): found directly, without a second Python call into nn.Module.__getattr__
        attributes = self.__dict__
        modules = attributes.get("_modules")
        if modules is not None and name in modules:
            return modules[name]
        parameters = attributes.get("_parameters")
        if parameters is not None and name in parameters:
            return parameters[name]
        buffers = attributes.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        # note: an AttributeError (not RuntimeError) so that hasattr(model, "trainer") is False, which
        # torch.jit.trace relies on when it scans a module's attributes
        if name == "trainer":
            raise AttributeError(f"{type(self).__name__} is not attached to a Trainer; pass it to "
                                 "trainer.fit/validate/test/predict first.")
        return super().__getattr__(name)

    @property
    def automatic_optimization(self) -> bool:
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = bool(value)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer else 0

    @property
    def logger(self) -> Any:
        return self._trainer.logger if self._trainer else None

    @property
    def loggers(self) -> list[Any]:
        return self._trainer.loggers if self._trainer else []

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print`, on the main process only."""
        if self._trainer is None or self._trainer.is_global_zero:
            print(*args, **kwargs)

    # --- logging ---------------------------------------------------------------------------------

    def log(self, name: str, value: Any, prog_bar: bool = False, logger: bool | None = None,
            on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
            enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
            add_dataloader_idx: bool = True, batch_size: int | None = None,
            metric_attribute: str | None = None, rank_zero_only: bool = False) -> None:
        """Record a scalar (or a torchmetrics Metric) for the progress bar, loggers and callbacks.

        In `training_step` a value is recorded per step (`on_step=True`); in validation and test, its
        mean over the epoch, weighted by batch size (`on_epoch=True`). With both on, the names get
        `_step` and `_epoch` suffixes. Lightning's arguments mean what they mean there:

        - `reduce_fx`: 'mean' (or 'avg'), 'sum', 'max', 'min' in any case, torch.mean/sum/max/min, or the
          builtins sum/max/min.
        - `add_dataloader_idx`: with several evaluation dataloaders the name ends in
          `/dataloader_idx_N` (after `_step` / `_epoch`); False keeps the name as given.
        - `rank_zero_only`: the value is logged by process 0 alone, so it is never reduced across
          processes (`sync_dist` is ignored); other processes do not have it to monitor.
        - `metric_attribute`: where the module holds the torchmetrics Metric logged, when it is not found
          among its submodules (its state is saved with the run).
        - `enable_graph=True` and `sync_dist_group` are not supported (an error says so): values are
          stored detached and reduced over all processes.

        Example:
            >>> self.log("val_loss", loss, prog_bar=True)
        """
        if enable_graph or sync_dist_group is not None:
            given = "enable_graph=True" if enable_graph else "sync_dist_group=..."
            raise ValueError(f"self.log({name!r}, ..., {given}) is not supported: ember stores logged values "
                             "detached and reduces them over all processes. Remove the argument (log a detached "
                             "value; reduce over a group yourself with torch.distributed).")
        trainer = self._trainer
        if trainer is None:
            if not self._warned_log_without_trainer:
                self._warned_log_without_trainer = True
                warnings.warn(f"self.log({name!r}, ...) was called with no Trainer attached; the value is "
                              "dropped.", stacklevel=2)
            return
        if not isinstance(value, torch.Tensor) and is_metric(value):
            metric_attribute = self._metric_attribute(name, value, metric_attribute)
        trainer.log_collector.log(name, value, prog_bar, True if logger is None else logger, on_step, on_epoch,
                                  reduce_fx, sync_dist, batch_size, add_dataloader_idx=add_dataloader_idx,
                                  rank_zero_only=rank_zero_only, metric_attribute=metric_attribute)

    def _metric_attribute(self, name: str, metric: Any, given: str | None) -> str:
        """Where this module holds `metric` (a resume restores the metric's state there)."""
        if given is not None:
            try:
                found = attrgetter(given)(self)
            except AttributeError:
                found = None
            if found is not metric:
                raise ValueError(f"self.log({name!r}, ..., metric_attribute={given!r}): {type(self).__name__}."
                                 f"{given} is not the metric logged; pass the attribute that holds it.")
            return given
        paths = self._metric_paths
        if id(metric) not in paths:  # looked up again only for a metric not seen before
            paths.clear()
            paths.update({id(m): p for p, m in self.named_modules() if is_metric(m)})
        if id(metric) not in paths:
            raise ValueError(
                f"self.log({name!r}, metric): the {type(metric).__name__} logged is not an attribute of "
                f"{type(self).__name__}, so its state cannot be saved and restored with the run. Assign it in "
                f"__init__ (self.acc = {type(metric).__name__}(...)), or pass metric_attribute='...' naming where "
                f"it is; metrics found: {sorted(paths.values()) or 'none'}.")
        return paths[id(metric)]

    def log_dict(self, dictionary: Mapping[str, Any], prog_bar: bool = False, logger: bool | None = None,
                 on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
                 enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
                 add_dataloader_idx: bool = True, batch_size: int | None = None,
                 rank_zero_only: bool = False) -> None:
        """`self.log` for each item of a dict (or of a torchmetrics MetricCollection)."""
        items = dictionary.items()
        if hasattr(dictionary, "compute") and hasattr(dictionary, "_modules"):  # MetricCollection
            items = [(dictionary._set_name(k) if hasattr(dictionary, "_set_name") else k, m)
                     for k, m in dictionary.items(keep_base=True)]
        for name, value in items:
            self.log(name, value, prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph, sync_dist,
                     sync_dist_group, add_dataloader_idx, batch_size, rank_zero_only=rank_zero_only)

    # --- the steps -------------------------------------------------------------------------------

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no training_step(batch, batch_idx); "
                                  "define it to return the loss (a tensor or a dict with 'loss').")

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """By default `self(batch)`."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} defines no configure_optimizers(). Define it to return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`, or a dict "
            "{'optimizer': ..., 'lr_scheduler': ...}.")

    def configure_callbacks(self) -> Any:
        return []

    def configure_model(self) -> None:
        """Build layers here to create them on the run's device / under its strategy. Called in every stage
        (fit, validate, test, predict) after `setup` and before `configure_optimizers`, so it must be
        idempotent: create a layer only if it does not exist yet."""

    # --- lifecycle hooks (no-op by default) ------------------------------------------------------

    def setup(self, stage: str) -> None: ...
    def teardown(self, stage: str) -> None: ...
    def prepare_data(self) -> None: ...
    def on_fit_start(self) -> None: ...
    def on_fit_end(self) -> None: ...
    def on_train_start(self) -> None: ...
    def on_train_end(self) -> None: ...
    def on_validation_start(self) -> None: ...
    def on_validation_end(self) -> None: ...
    def on_test_start(self) -> None: ...
    def on_test_end(self) -> None: ...
    def on_predict_start(self) -> None: ...
    def on_predict_end(self) -> None: ...
    def on_train_epoch_start(self) -> None: ...
    def on_train_epoch_end(self) -> None: ...
    def on_validation_epoch_start(self) -> None: ...
    def on_validation_epoch_end(self) -> None: ...
    def on_test_epoch_start(self) -> None: ...
    def on_test_epoch_end(self) -> None: ...
    def on_predict_epoch_start(self) -> None: ...
    def on_predict_epoch_end(self) -> None: ...
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None: ...
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None: ...
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None: ...
    def on_before_backward(self, loss: torch.Tensor) -> None: ...
    def on_after_backward(self) -> None: ...
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_before_zero_grad(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def on_validation_model_zero_grad(self) -> None:
        """Before a validation inside fit (unless an accumulation window is open): drop the gradients of
        the last step, so they take no memory during validation. Override it to keep them (for example
        when you accumulate over several batches in manual optimization)."""
        self.zero_grad(set_to_none=True)

    def on_validation_model_eval(self) -> None:
        """At the start of validation: eval mode. (The modes of the submodules are recorded before and put
        back at the end, unless `on_validation_model_train` is overridden.)"""
        self.eval()

    def on_validation_model_train(self) -> None:
        """At the end of validation, when overridden (by default the recorded modes are put back)."""
        self.train()

    def on_test_model_eval(self) -> None:
        self.eval()

    def on_test_model_train(self) -> None:
        """At the end of test, when overridden (by default the recorded modes are put back)."""
        self.train()

    def on_predict_model_eval(self) -> None:
        self.eval()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    # --- optimization ----------------------------------------------------------------------------

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """`loss.backward()` with the precision's scaling and the backward hooks, for manual optimization."""
        self.trainer.optimization.backward(loss, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Called for backward when overridden; `loss` is already scaled (16-mixed) and divided by
        `accumulate_grad_batches`."""
        loss.backward(*args, **kwargs)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer,
                       optimizer_closure: Any = None) -> None:
        """Called, when overridden, on the batch that ends an accumulation window. `optimizer_closure` runs
        training_step, zero_grad (on a window's first batch) and backward, and returns the loss; it must be
        called, usually by the optimizer's step.

        Example:
            >>> def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            ...     if self.trainer.global_step < 500:  # learning-rate warm-up
            ...         for group in optimizer.param_groups:
            ...             group["lr"] = self.hparams.lr * (self.trainer.global_step + 1) / 500
            ...     optimizer.step(closure=optimizer_closure)
        """
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Called, when overridden, to zero the gradients at the first batch of each accumulation window."""
        optimizer.zero_grad()

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Called, when overridden, to step each scheduler when its interval and frequency are due; `metric`
        is the monitored value for ReduceLROnPlateau, else None."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Called before each optimizer step; by default clips as the Trainer arguments say."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                       gradient_clip_algorithm: str | None = None) -> None:
        """Clip the gradients of `optimizer`'s parameters by norm (default) or value; under 16-mixed they
        are unscaled first. With manual optimization, call it between backward and `opt.step()`.

        Example:
            >>> self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        """
        algorithm = gradient_clip_algorithm or "norm"
        if algorithm not in ("norm", "value"):
            raise ValueError(f"clip_gradients(gradient_clip_algorithm={gradient_clip_algorithm!r}): expected "
                             "'norm' or 'value'.")
        if not gradient_clip_val:
            return
        optimization = self._trainer.optimization if self._trainer is not None else None
        if optimization is not None:
            optimization.clip_gradients(optimizer, gradient_clip_val, algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)

    def freeze(self) -> None:
        """No gradients for any parameter, and eval mode."""
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        for param in self.parameters():
            param.requires_grad = True
        self.train()

    # --- checkpoints -----------------------------------------------------------------------------

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> "Module":
        """Build the module from the checkpoint's hyperparameters (updated by `kwargs`) and load its weights.

        Hyperparameters come back with the types they were saved with. Arguments the checkpoint does not
        hold (an `nn.Module` or callable that `save_hyperparameters` left out) are passed as `kwargs`.

        Args:
            checkpoint_path: the `.ckpt` file.
            map_location: where the weights go once loaded (a device).
            hparams_file: a YAML file whose values replace the checkpoint's (where they differ from it).
            strict: whether the weights must match the model's keys exactly (default True).
            weights_only: taken for Lightning code; ember always loads with `weights_only=True` (its
                checkpoints hold nothing pickled).
            **kwargs: `__init__` arguments, replacing the stored ones.

        Example:
            >>> model = Classifier.load_from_checkpoint("runs/version_0/checkpoints/last.ckpt")
            >>> model = Finetuner.load_from_checkpoint(path, backbone=resnet18())  # a left-out module
        """
        checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
        source = str(checkpoint_path)
        hparams = _stored_hparams(cls, checkpoint.get("hyper_parameters") or {}, kwargs, source)
        if hparams_file is not None:
            import yaml

            with open(hparams_file) as f:
                from_file = yaml.safe_load(f) or {}
            # hparams.yaml shows typed values readably (an Enum as 'Color.RED'): where the file shows the
            # stored value unchanged, the stored, typed value stays
            hparams.update({k: v for k, v in from_file.items() if k not in hparams or readable(hparams[k]) != v})
        model = _instantiate(cls, hparams, kwargs, checkpoint.get("hparams_name"), source)
        model.on_load_checkpoint(checkpoint)
        load_weights(model, checkpoint["state_dict"], strict=True if strict is None else strict,
                     source=f"the checkpoint {source!r}")
        if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
            model.to(map_location)
        return model


def _stored_hparams(cls: type, stored: Mapping[str, Any], kwargs: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The checkpoint's hyperparameters decoded, except those `kwargs` replace (which need not decode here)."""
    if TAG in stored:  # hyperparameters saved from one dict that had non-str keys
        stored = from_plain(stored)
    hparams = {}
    for name, value in stored.items():
        if name in kwargs:
            continue
        try:
            hparams[name] = from_plain(value)
        except ValueError as err:
            raise CheckpointError(
                f"The hyperparameter {name!r} in {source} cannot be rebuilt here: {err}. Pass it yourself: "
                f"{cls.__name__}.load_from_checkpoint(path, {name}=...).") from err
    return hparams


def _instantiate(cls: type, hparams: dict[str, Any], kwargs: Mapping[str, Any], hparams_name: str | None,
                 source: str) -> Any:
    params = inspect.signature(cls.__init__).parameters
    if hparams_name and hparams_name in params and params[hparams_name].kind is not params[hparams_name].VAR_KEYWORD:
        # saved with save_hyperparameters(obj): the stored items are `obj`; a kwarg that names another
        # __init__ argument is that argument (as in Lightning), any other kwarg replaces an item of `obj`
        own = {k: v for k, v in kwargs.items() if k in params and k != hparams_name}
        items = {**hparams, **{k: v for k, v in kwargs.items() if k not in own}}
        call = {hparams_name: AttributeDict(items), **own}
    else:
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        merged = {**hparams, **kwargs}
        call = merged if takes_any else {k: v for k, v in merged.items() if k in params}
    try:
        with passed_on_load(list(kwargs)):
            return cls(**call)
    except TypeError as err:
        required = [name for name, p in list(params.items())[1:] if p.default is p.empty
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        missing = [name for name in required if name not in call]
        if missing:
            fix = (f"The checkpoint does not hold {missing} (save_hyperparameters leaves out modules and "
                   f"callables); pass {'it' if len(missing) == 1 else 'them'}: {cls.__name__}.load_from_checkpoint("
                   f"path, {', '.join(f'{name}=...' for name in missing)}).")
        else:
            fix = ("Pass the missing arguments to load_from_checkpoint(..., name=value), or call "
                   "self.save_hyperparameters() in __init__ so checkpoints record them.")
        raise CheckpointError(
            f"Could not build {cls.__name__} from the hyperparameters in {source} ({sorted(hparams)}) and "
            f"the arguments given ({sorted(kwargs)}): "
            f"{err}. {fix}") from err


def overrides(obj: Any, base: type, name: str) -> bool:
    """Whether `obj`'s class overrides `base.name` (read once at setup, so that a hook nobody overrides
    costs nothing per step)."""
    return getattr(type(obj), name, None) is not getattr(base, name, None)


def accepts(hook: Callable[..., Any], name: str, min_args: int | None = None) -> bool:
    """Whether a hook takes the argument `name`: it names it, takes *args, or has at least `min_args`
    positional parameters (Lightning's rule, so `def training_step(self, batch)` gets the batch alone)."""
    params = inspect.signature(hook).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (any(p.name == name for p in params) or any(p.kind is p.VAR_POSITIONAL for p in params)
            or (min_args is not None and len(positional) >= min_args))


def defines(model: Any, name: str) -> bool:
    """Whether `model` has a hook `name` of its own: overridden in its class or set on the instance, and
    not set to None (Lightning's way to switch a loop off: `model.validation_step = None`)."""
    return getattr(model, name, None) is not None and (name in vars(model) or overrides(model, Module, name))
