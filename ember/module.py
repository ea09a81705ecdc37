"""Module: a `torch.nn.Module` that also says what one training step does.

Every hook has a no-op default; the Trainer calls them in the order documented in docs/hooks.md.
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from ember.checkpoint import CheckpointError, load_checkpoint, load_weights
from ember.data import move_to_device
from ember.hparams import AttributeDict, HyperparametersMixin, passed_on_load
from ember.plain import TAG, from_plain, readable

if TYPE_CHECKING:
    from ember.trainer import Trainer


class Module(HyperparametersMixin, nn.Module):
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
        `_step` and `_epoch` suffixes.

        Example:
            >>> self.log("val_loss", loss, prog_bar=True)
        """
        trainer = self._trainer
        if trainer is None:
            if not self._warned_log_without_trainer:
                self._warned_log_without_trainer = True
                warnings.warn(f"self.log({name!r}, ...) was called with no Trainer attached; the value is "
                              "dropped.", stacklevel=2)
            return
        trainer.log_collector.log(name, value, prog_bar, True if logger is None else logger, on_step, on_epoch,
                          reduce_fx, sync_dist, batch_size)

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
            self.log(name, value, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist=sync_dist,
                     batch_size=batch_size)

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

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    # --- optimization ----------------------------------------------------------------------------

    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from `configure_optimizers`; in manual optimization, call `.step()` on them."""
        optimization = self.trainer.optimization
        optimizers = optimization.manual_optimizers if use_pl_optimizer else optimization.optimizers
        return optimizers[0] if len(optimizers) == 1 else list(optimizers)

    def lr_schedulers(self) -> Any:
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """`loss.backward()` with the precision's scaling, for manual optimization."""
        self.trainer.optimization.backward(loss, *args, **kwargs)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Called before each optimizer step; by default clips as the Trainer arguments say."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                       gradient_clip_algorithm: str | None = None) -> None:
        if not gradient_clip_val:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if (gradient_clip_algorithm or "norm") == "norm":
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
                             strict: bool | None = None, **kwargs: Any) -> "Module":
        """Build the module from the checkpoint's hyperparameters (updated by `kwargs`) and load its weights.

        Hyperparameters come back with the types they were saved with. Arguments the checkpoint does not
        hold (an `nn.Module` or callable that `save_hyperparameters` left out) are passed as `kwargs`.

        Args:
            checkpoint_path: the `.ckpt` file.
            map_location: where the weights go once loaded (a device).
            hparams_file: a YAML file whose values replace the checkpoint's (where they differ from it).
            strict: whether the weights must match the model's keys exactly (default True).
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
