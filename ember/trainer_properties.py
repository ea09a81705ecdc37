"""What callbacks and users read of a Trainer: Lightning's properties, over the loop state, the strategy,
the log collector and the callbacks."""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Iterator

import torch

from ember.callbacks.base import Callback
from ember.module import Module
from ember.trainer_state import RunningStage, TrainerFn, TrainerState, TrainerStatus


class TrainerProperties:
    """The read side of `Trainer` (a part of it, kept in this file so trainer.py holds the loops)."""

    def _all_callbacks(self) -> list[Callback]:
        return self._callbacks.callbacks if len(self._callbacks) else self.callbacks

    def _shard(self) -> tuple[int, int]:
        """(rank, number of ranks) to split the data by; `use_distributed_sampler=False`: (0, 1), every rank
        reads the loaders as they are given (as in Lightning)."""
        return self.strategy.shard() if self.use_distributed_sampler else (0, 1)

    def _step_logs_due(self) -> bool:
        """Whether the batch just trained ends a `log_every_n_steps` period of the loggers' step axis (see
        `_logged_steps`); in automatic optimization the step set `optimization.flush_due`, reset here."""
        if self.optimization is None:
            return False
        if self.lightning_module.automatic_optimization:
            due, self.optimization.flush_due = self.optimization.flush_due, False
            return due
        return self.fit_state.total_batches % self.log_every_n_steps == 0

    def _logged_steps(self) -> int:
        """The loggers' step axis: optimizer steps, or in manual optimization training batches (as in
        Lightning, where a batch that steps two optimizers is one step for the loggers)."""
        if self.lightning_module is None or self.lightning_module.automatic_optimization:
            return self.global_step
        return self.fit_state.total_batches

    @property
    def state(self) -> TrainerState:
        """What the Trainer is doing: `.fn` (the entry point), `.stage` (the loop), `.status`, `.finished`.

        One object for the Trainer's life, as in Lightning. It also equals the entry point's name while
        that runs (`trainer.state == "fit"` inside fit)."""
        state = self.__dict__.setdefault("_trainer_state", TrainerState())
        state.stage = self._running_stage(state.fn) if state.status == TrainerStatus.RUNNING else None
        return state

    @state.setter
    def state(self, value: str | None) -> None:
        # the Trainer sets the entry point's name when it starts and None when it has ended
        state = self.__dict__.setdefault("_trainer_state", TrainerState())
        if value is not None:
            state.fn, state.status = TrainerFn(str(value)), TrainerStatus.RUNNING
            self._exception_around = sys.exc_info()[1]  # fit may be called inside the caller's `except`
        elif state.fn is not None:
            # set in the Trainer's `finally`: an exception of this run on its way out means it did not finish
            exception = sys.exc_info()[1]
            failed = exception is not None and exception is not self._exception_around
            interrupted = failed or getattr(self, "interrupted", False)
            state.status = TrainerStatus.INTERRUPTED if interrupted else TrainerStatus.FINISHED
            state.stage = None

    def _running_stage(self, fn: TrainerFn | None) -> RunningStage | None:
        if fn is None:
            return None
        if fn != TrainerFn.FITTING:
            return {"validate": RunningStage.VALIDATING, "test": RunningStage.TESTING,
                    "predict": RunningStage.PREDICTING}[fn.value]
        if self.sanity_checking:
            return RunningStage.SANITY_CHECKING
        # inside fit, the validation loop runs its hooks under their names and with the model in eval mode
        hook = self.log_collector.hook or ""
        if hook.startswith(("on_validation", "validation_step")):
            return RunningStage.VALIDATING
        if not hook and self.lightning_module is not None and not self.lightning_module.training:
            return RunningStage.VALIDATING
        return RunningStage.TRAINING

    @property
    def validating(self) -> bool:
        """A validation loop runs (in `validate`, or inside `fit`)."""
        return self.state.stage == RunningStage.VALIDATING

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @property
    def predicting(self) -> bool:
        return self.state.stage == RunningStage.PREDICTING

    @property
    def evaluating(self) -> bool:
        """Validation, test or the sanity check runs."""
        stage = self.state.stage
        return stage is not None and stage.evaluating

    @property
    def current_epoch(self) -> int:
        return self.fit_state.epoch

    @property
    def global_step(self) -> int:
        return self.fit_state.global_step

    @property
    def should_stop(self) -> bool:
        """Set to True (by a callback or the Module) to end the fit after the current batch."""
        return self.fit_state.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.fit_state.should_stop = bool(value)

    @property
    def val_check_batch(self) -> float:
        """Validation runs after every this many training batches (inf: once, when an epoch of unknown
        length runs out)."""
        return self._val_every

    @property
    def enable_validation(self) -> bool:
        """Whether fit validates: the Module has a validation_step and there are validation batches."""
        model = self.lightning_module
        step = getattr(model, "validation_step", None)
        overridden = step is not None and getattr(type(model), "validation_step", None) is not Module.validation_step
        return overridden and bool(self._eval_loaders["validate"]) and any(n > 0 for n in self.num_val_batches)

    @property
    def val_dataloaders(self) -> Any:
        """The validation dataloader, or the list of them when there are several (None before any), as
        Lightning gives it; `test_dataloaders` and `predict_dataloaders` likewise."""
        return _as_given(self._eval_loaders["validate"])

    @property
    def test_dataloaders(self) -> Any:
        return _as_given(self._eval_loaders["test"])

    @property
    def predict_dataloaders(self) -> Any:
        return _as_given(self._eval_loaders["predict"])

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.optimization.optimizers if self.optimization is not None else []

    @optimizers.setter
    def optimizers(self, value: list[torch.optim.Optimizer]) -> None:
        self.optimization.optimizers = list(value)
        self.optimization.make_views()

    @property
    def lr_scheduler_configs(self) -> list[Any]:
        return self.optimization.lr_scheduler_configs if self.optimization is not None else []

    @lr_scheduler_configs.setter
    def lr_scheduler_configs(self, value: list[Any]) -> None:
        self.optimization.lr_scheduler_configs = list(value)

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self.log_collector.callback_metrics

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        return self.log_collector.logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        return self.log_collector.progress_bar_metrics

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @property
    def log_dir(self) -> str:
        return self.loggers[0].log_dir if self.loggers else self.default_root_dir

    @property
    def model(self) -> Module | None:
        return self.lightning_module

    @property
    def checkpoint_callbacks(self) -> list[Callback]:
        from ember.callbacks.model_checkpoint import ModelCheckpoint

        return [c for c in self._all_callbacks() if isinstance(c, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callbacks(self) -> list[Callback]:
        from ember.callbacks.early_stopping import EarlyStopping

        return [c for c in self._all_callbacks() if isinstance(c, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> Any:
        found = self.early_stopping_callbacks
        return found[0] if found else None

    @property
    def progress_bar_callback(self) -> Any:
        from ember.callbacks.progress import ProgressBar

        return next((c for c in self._all_callbacks() if isinstance(c, ProgressBar)), None)

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return getattr(self.strategy, "node_rank", 0)

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def device(self) -> torch.device:
        return self.strategy.root_device

    @property
    def root_device(self) -> torch.device:
        return self.strategy.root_device

    @property
    def accelerator(self) -> str:
        """'cpu', 'cuda' or 'mps': the kind of device this Trainer runs on."""
        return self.strategy.root_device.type

    @property
    def num_devices(self) -> int:
        return len(self.device_ids)

    @property
    def device_ids(self) -> list[int]:
        return getattr(self.strategy, "device_ids", None) or [self.strategy.root_device.index or 0]

    @property
    def num_sanity_val_batches(self) -> list[float]:
        """Batches the sanity check runs of each validation loader."""
        limit = self.num_sanity_val_steps
        return [n if limit == -1 else min(limit, n) for n in self.num_val_batches]

    @property
    def received_sigterm(self) -> bool:
        """A SIGTERM asked the running fit to stop (it ends after the current batch, with a checkpoint)."""
        interrupt = self.__dict__.get("_interrupt")
        return interrupt is not None and interrupt.requested == "SIGTERM"

    @property
    def scaler(self) -> Any:
        """The `torch.amp.GradScaler` of 16-mixed precision (None otherwise)."""
        return self._precision.scaler

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int] | None:
        """What a DistributedSampler needs for this process (None on one process)."""
        if self.world_size <= 1:
            return None
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Iterator[None]:
        """Create a model's tensors on this Trainer's device, in the dtype of a '-true' precision.

        Example:
            >>> with trainer.init_module():
            ...     model = Classifier()  # built on the GPU, in bfloat16 with precision='bf16-true'
        """
        dtype = self._precision.param_dtype
        previous = torch.get_default_dtype()
        with torch.device(self.root_device):
            if dtype is not None:
                torch.set_default_dtype(dtype)
            try:
                yield
            finally:
                torch.set_default_dtype(previous)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """`print`, on the process of rank 0 only."""
        if self.is_global_zero:
            print(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # called only for names the Trainer lacks: Lightning's get their row of docs/lightning-compat.md
        if name in _NOT_SUPPORTED:
            from ember.lightning.not_supported import refuse

            refuse(name, f"trainer.{name}", AttributeError)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the fit will take (for schedulers such as OneCycleLR)."""
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        total = per_epoch * self.max_epochs if self.max_epochs != -1 else math.inf
        return min(total, self.max_steps) if self.max_steps != -1 else total


_NOT_SUPPORTED = ("is_last_batch", "precision_plugin", "fit_loop", "validate_loop", "test_loop", "predict_loop",
                  "profiler", "overfit_batches", "enable_autolog_hparams")


def _as_given(loaders: list[Any]) -> Any:
    return None if not loaders else loaders[0] if len(loaders) == 1 else loaders
