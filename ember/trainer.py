"""Trainer: fit, validate, test and predict a Module.

The fit loop is `Trainer._fit` -> `_train_epoch` -> `_train_batch`; each reads top to bottom and calls
the hooks by name. Helpers decide what happens (checkpoint contents, scheduler stepping); the loops
decide when. The order of the hooks is the table in docs/hooks.md.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch

from ember import __version__
from ember.callbacks.base import Callback, CallbackList
from ember.checkpoint import (LIGHTNING_VERSION_KEY, LIGHTNING_VERSION_VALUE, CheckpointError, load_checkpoint,
                              load_weights, rng_states, save_checkpoint, set_rng_states)
from ember.data import (DataModule, as_loader_list, loader_length, make_resumable, private_generator,
                        warn_not_resumable)
from ember.hparams import to_plain
from ember.logs import LogCollector
from ember.module import Module
from ember.optimizers import LRSchedulerConfig, ManualOptimizer, parse_optimizers
from ember.precision import Precision, parse_precision
from ember.state import FitState
from ember.strategies import Strategy, select_strategy

# Lightning 1.x arguments that 2.x removed, and what replaced them.
REMOVED_ARGUMENTS = {
    "gpus": "accelerator='gpu', devices=N",
    "tpu_cores": "accelerator='tpu', devices=N",
    "num_processes": "devices=N",
    "resume_from_checkpoint": "trainer.fit(model, ckpt_path=...)",
    "auto_lr_find": "ember.tuner.Tuner(trainer).lr_find(model)",
    "auto_scale_batch_size": "ember.tuner.Tuner(trainer).scale_batch_size(model)",
    "auto_select_gpus": "devices=N (free devices are chosen by CUDA_VISIBLE_DEVICES)",
    "checkpoint_callback": "enable_checkpointing",
    "weights_summary": "enable_model_summary",
    "progress_bar_refresh_rate": "enable_progress_bar (and the progress bar callback's refresh_rate)",
    "flush_logs_every_n_steps": "the logger's own flush argument",
    "terminate_on_nan": "detect_anomaly=True",
    "replace_sampler_ddp": "use_distributed_sampler",
    "weights_save_path": "default_root_dir, or ModelCheckpoint(dirpath=...)",
    "stochastic_weight_avg": "a StochasticWeightAveraging callback",
    "track_grad_norm": "a callback that logs the grad norm in on_before_optimizer_step",
    "amp_backend": "precision='16-mixed'",
    "amp_level": "precision='16-mixed'",
    "move_metrics_to_cpu": "nothing: metrics stay where they are computed",
    "multiple_trainloader_mode": "a CombinedLoader in your DataModule",
    "reload_dataloaders_every_epoch": "reload_dataloaders_every_n_epochs=1",
    "prepare_data_per_node": "DataModule.prepare_data_per_node",
    "truncated_bptt_steps": "manual optimization",
    "log_gpu_memory": "a DeviceStatsMonitor callback",
    "process_position": "the progress bar callback",
}


class Trainer:
    """Runs fit / validate / test / predict for a `Module`, with Lightning 2.x's arguments.

    Example:
        >>> trainer = ember.Trainer(max_epochs=3, precision="bf16-mixed", gradient_clip_val=1.0)
        >>> trainer.fit(model, train_loader, val_loader)
        >>> trainer.test(ckpt_path="best")
    """

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        strategy: Any = "auto",
        devices: Any = "auto",
        num_nodes: int = 1,
        precision: Any = "32-true",
        logger: Any = None,
        callbacks: Any = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: Any = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        detect_anomaly: bool = False,
        barebones: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(_unknown_argument_message(unknown))
        self.strategy: Strategy = select_strategy(strategy, accelerator, devices)
        self.precision = parse_precision(precision)
        self._precision = Precision(self.precision, self.strategy.root_device.type)
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()

        if fast_dev_run is True:
            fast_dev_run = 1
        if fast_dev_run is not False and (not isinstance(fast_dev_run, int) or fast_dev_run < 0):
            raise ValueError(f"Trainer(fast_dev_run={fast_dev_run!r}) must be True, False, or a number of batches.")
        self.fast_dev_run = fast_dev_run
        if fast_dev_run:
            limit_train_batches = limit_val_batches = limit_test_batches = limit_predict_batches = fast_dev_run
            max_steps, max_epochs, num_sanity_val_steps, val_check_interval = fast_dev_run, 1, 0, 1.0
            logger = False

        self.max_steps = _check_int("max_steps", max_steps, minimum=-1)
        if max_epochs is None:
            max_epochs = 1000 if max_steps == -1 and max_time is None else -1
        self.max_epochs = _check_int("max_epochs", max_epochs, minimum=-1)
        self.min_epochs = _check_int("min_epochs", min_epochs or 0, minimum=0)
        self.min_steps = _check_int("min_steps", min_steps or 0, minimum=0)
        self.max_time = _parse_max_time(max_time)
        self.limit_train_batches = _check_limit("limit_train_batches", limit_train_batches)
        self.limit_val_batches = _check_limit("limit_val_batches", limit_val_batches)
        self.limit_test_batches = _check_limit("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = _check_limit("limit_predict_batches", limit_predict_batches)
        self.val_check_interval = _check_limit("val_check_interval", val_check_interval)
        if check_val_every_n_epoch is not None:
            _check_int("check_val_every_n_epoch", check_val_every_n_epoch, minimum=1)
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = _check_int("num_sanity_val_steps",
                                               2 if num_sanity_val_steps is None else num_sanity_val_steps, -1)
        self.log_every_n_steps = _check_int("log_every_n_steps", 50 if log_every_n_steps is None
                                            else log_every_n_steps, minimum=1)
        self.accumulate_grad_batches = _check_int("accumulate_grad_batches", accumulate_grad_batches, minimum=1)
        if gradient_clip_algorithm not in (None, "norm", "value"):
            raise ValueError(f"Trainer(gradient_clip_algorithm={gradient_clip_algorithm!r}): expected 'norm' or "
                             "'value'.")
        if gradient_clip_val is not None and gradient_clip_val < 0:
            raise ValueError(f"Trainer(gradient_clip_val={gradient_clip_val}) must be >= 0.")
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm or "norm"
        self.deterministic = deterministic
        self.benchmark = benchmark
        self.inference_mode = inference_mode
        self.use_distributed_sampler = use_distributed_sampler
        self.detect_anomaly = detect_anomaly
        self.barebones = barebones
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.num_nodes = num_nodes

        if barebones:
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
        self.loggers = _build_loggers(logger, self.default_root_dir)
        self.callbacks = _build_callbacks(callbacks, enable_checkpointing, enable_progress_bar,
                                          enable_model_summary)

        self.fit_state = FitState()  # every loop counter; saved whole in every checkpoint

        self.state: str | None = None  # 'fit', 'validate', 'test', 'predict' while running
        self.sanity_checking = False
        self.training = False
        self.lightning_module: Module | None = None
        self.datamodule: DataModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self._manual_optimizers: list[ManualOptimizer] = []
        self._callbacks = CallbackList()
        self._logs = LogCollector()
        self._logs.reduce = self.strategy.reduce if self.strategy.world_size > 1 else None
        self.train_dataloader: Any = None
        self.val_dataloaders: list[Any] = []
        self.test_dataloaders: list[Any] = []
        self.predict_dataloaders: list[Any] = []
        self.num_training_batches: float = 0
        self.num_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self._val_every = math.inf
        self._start_time = 0.0
        self._train_resumable = True
        self._batches_as_they_come = False
        self.ckpt_path: str | None = None  # the checkpoint the last stage loaded

    # --- what callbacks and users read -----------------------------------------------------------

    @property
    def current_epoch(self) -> int:
        return self.fit_state.epoch

    @current_epoch.setter
    def current_epoch(self, value: int) -> None:
        self.fit_state.epoch = value

    @property
    def global_step(self) -> int:
        return self.fit_state.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.fit_state.global_step = value

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
        return self._validation_enabled()

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self._logs.callback_metrics

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        return self._logs.logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        return self._logs.progress_bar_metrics

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
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def device(self) -> torch.device:
        return self.strategy.root_device

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the fit will take (for schedulers such as OneCycleLR)."""
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        total = per_epoch * self.max_epochs if self.max_epochs != -1 else math.inf
        return min(total, self.max_steps) if self.max_steps != -1 else total

    def _all_callbacks(self) -> list[Callback]:
        return self._callbacks.callbacks if len(self._callbacks) else self.callbacks

    # --- fit -------------------------------------------------------------------------------------

    def fit(self, model: Module, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None) -> None:
        """Train `model`; resume from `ckpt_path` ('last', a path, or None to start fresh).

        Example:
            >>> trainer.fit(model, datamodule=dm, ckpt_path="last")
        """
        if isinstance(train_dataloaders, DataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        self._check_sources(model, train_dataloaders, datamodule, "fit", "train_dataloaders")
        self._run("fit", model, datamodule, lambda: self._fit(train_dataloaders, val_dataloaders, ckpt_path))

    def _fit(self, train_dataloaders: Any, val_dataloaders: Any, ckpt_path: Any) -> None:
        model, callbacks = self.lightning_module, self._callbacks
        # the checkpoint is read first: it names the logger run that a resumed fit continues
        checkpoint = self._read_checkpoint_for_fit(ckpt_path)
        if checkpoint is not None:
            self._restore_logger_identity(checkpoint)
        self._setup_stage("fit")
        self.fit_state.data_seed = _draw_seed() if checkpoint is None else checkpoint["loops"]["data_seed"]
        self._connect_train_data(train_dataloaders)
        self._connect_eval_data("validate", val_dataloaders)
        self._configure_optimizers()
        if checkpoint is not None:
            self._restore(checkpoint, ckpt_path)
        self._log_hyperparams()
        self._start_time = time.monotonic()

        callbacks.on_fit_start(self, model)
        model.on_fit_start()
        if checkpoint is None:
            self._sanity_check()
        self.training = True
        callbacks.on_train_start(self, model)
        model.on_train_start()
        while not self._fit_done():
            self._train_epoch()
        self.training = False
        callbacks.on_train_end(self, model)
        model.on_train_end()
        callbacks.on_fit_end(self, model)
        model.on_fit_end()

    def _train_epoch(self) -> None:
        model, callbacks, logs = self.lightning_module, self._callbacks, self._logs
        start = self.fit_state.batches_done  # > 0 only when resuming in the middle of an epoch
        self.fit_state.epoch_finished = False
        loader = self._train_loader_for_epoch(start)
        logs.use("train")
        if start == 0:
            logs.reset_stage()
        model.train()
        logs.hook = "on_train_epoch_start"
        callbacks.on_train_epoch_start(self, model)
        model.on_train_epoch_start()

        if 0 < start and self.fit_state.validated_at != start and self._should_validate(start):
            # resumed from a checkpoint written after a batch but before the validation that followed it
            self._run_validation()
            logs.use("train")
        batch_idx = start - 1
        for batch_idx, batch in enumerate(loader, start):
            if batch_idx >= self.num_training_batches:
                break
            self._train_batch(batch, batch_idx)
            if self._should_validate(batch_idx + 1):
                self._run_validation()
                logs.use("train")
            if self._stop_mid_epoch():
                break
        self.fit_state.epoch_finished = batch_idx + 1 >= self.num_training_batches or self._loader_exhausted(batch_idx)
        if self.fit_state.epoch_finished and self._val_every == math.inf and self._validation_enabled():
            self._run_validation()  # an epoch of unknown length validates when it runs out
            logs.use("train")

        logs.hook = "on_train_epoch_end"
        model.on_train_epoch_end()
        self._send_to_loggers(logs.end_epoch())  # before the callbacks, which may write a checkpoint
        if self.fit_state.epoch_finished:
            self._step_schedulers("epoch")
        callbacks.on_train_epoch_end(self, model)
        self._send_to_loggers(logs.end_epoch())  # what callbacks logged in on_train_epoch_end
        logs.hook = None
        if self.fit_state.epoch_finished:
            self.current_epoch += 1
            self.fit_state.batches_done, self.fit_state.epoch_finished, self.fit_state.validated_at = 0, False, -1
        self.should_stop = self.strategy.reduce_bool(self.should_stop)

    def _train_batch(self, batch: Any, batch_idx: int) -> None:
        model, callbacks, logs = self.lightning_module, self._callbacks, self._logs
        batch = self._to_device(batch, 0)
        logs.start_batch(batch)
        self.fit_state.stepped = False
        logs.hook = "on_train_batch_start"
        callbacks.on_train_batch_start(self, model, batch, batch_idx)
        model.on_train_batch_start(batch, batch_idx)
        if model.automatic_optimization:
            outputs = self._automatic_step(batch, batch_idx)
        else:
            logs.hook = "training_step"
            with self._precision.forward_context():
                outputs = model.training_step(batch, batch_idx)
            _check_step_output(outputs, manual=True)
        self.fit_state.batches_done = batch_idx + 1
        logs.hook = "on_train_batch_end"
        callbacks.on_train_batch_end(self, model, outputs, batch, batch_idx)
        model.on_train_batch_end(outputs, batch, batch_idx)
        logs.hook = None
        logs.batch = None  # let the batch's memory go before the next one is collated
        self._flush_step_logs()

    def _flush_step_logs(self) -> None:
        """Send the step values to the loggers if this batch stepped on a `log_every_n_steps` boundary.

        Called after on_train_batch_end, and before a checkpoint is written in it, so that what the
        loggers hold is never behind the newest checkpoint."""
        if self._flush_due:
            self._flush_due = False
            self._send_to_loggers(self._logs.pop_step_values(), step=self.global_step - 1)

    def _automatic_step(self, batch: Any, batch_idx: int) -> Any:
        model = self.lightning_module
        optimizer = self.optimizers[0]
        self._logs.hook = "training_step"
        with self._precision.forward_context():
            outputs = model.training_step(batch, batch_idx)
        loss = _check_step_output(outputs, manual=False)
        if loss is None:  # the user skipped this batch
            return outputs
        if self.detect_anomaly and not torch.isfinite(loss):  # note: a sync point, only with detect_anomaly
            raise FloatingPointError(
                f"training_step returned a loss of {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (global step {self.global_step}); detect_anomaly=True stops here. Check the "
                "learning rate, the inputs of this batch, and log/exp/division in the loss.")
        if self.accumulate_grad_batches > 1:
            loss = loss / self.accumulate_grad_batches
        self._backward(loss)
        window_end = (batch_idx + 1) % self.accumulate_grad_batches == 0 or batch_idx + 1 == self.num_training_batches
        if window_end:
            self._optimizer_step(optimizer)
        return outputs

    def _backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        model, callbacks = self.lightning_module, self._callbacks
        self._logs.hook = "on_before_backward"
        callbacks.on_before_backward(self, model, loss)
        model.on_before_backward(loss)
        self._precision.backward(loss, *args, **kwargs)
        self._logs.hook = "on_after_backward"
        callbacks.on_after_backward(self, model)
        model.on_after_backward()

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> None:
        model, callbacks = self.lightning_module, self._callbacks
        self._precision.unscale(optimizer)
        self._logs.hook = "on_before_optimizer_step"
        callbacks.on_before_optimizer_step(self, model, optimizer)
        model.on_before_optimizer_step(optimizer)
        if self._clip_each_step:
            model.configure_gradient_clipping(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        self._precision.step(optimizer, closure)
        self._logs.hook = "on_before_zero_grad"
        callbacks.on_before_zero_grad(self, model, optimizer)
        model.on_before_zero_grad(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self._count_step()
        if model.automatic_optimization:
            self._step_schedulers("step")

    def _count_step(self) -> None:
        """One optimizer step was taken (automatic, or `opt.step()` in manual optimization)."""
        self.global_step += 1
        self.fit_state.stepped = True
        self._flush_due = self.global_step % self.log_every_n_steps == 0

    # --- validation, test, predict ---------------------------------------------------------------

    def validate(self, model: Module | None = None, dataloaders: Any = None, ckpt_path: Any = None,
                 verbose: bool = True, datamodule: DataModule | None = None) -> list[dict[str, float]]:
        """Run the validation loop once; returns one dict of epoch metrics per dataloader."""
        return self._evaluate_entry("validate", model, dataloaders, ckpt_path, verbose, datamodule)

    def test(self, model: Module | None = None, dataloaders: Any = None, ckpt_path: Any = None,
             verbose: bool = True, datamodule: DataModule | None = None) -> list[dict[str, float]]:
        """Run the test loop once; `ckpt_path` may be 'best', 'last' or a path.

        Example:
            >>> trainer.test(datamodule=dm, ckpt_path="best")
            [{'test_loss': 0.31, 'test_acc': 0.91}]
        """
        return self._evaluate_entry("test", model, dataloaders, ckpt_path, verbose, datamodule)

    def _evaluate_entry(self, stage: str, model: Module | None, dataloaders: Any, ckpt_path: Any,
                        verbose: bool, datamodule: DataModule | None) -> list[dict[str, float]]:
        if isinstance(dataloaders, DataModule):
            datamodule, dataloaders = dataloaders, None
        model = model or self.lightning_module
        self._check_sources(model, dataloaders, datamodule, stage, "dataloaders")
        results: list[dict[str, float]] = []

        def run() -> None:
            self._setup_stage(stage)
            self._connect_eval_data(stage, dataloaders)
            self._load_weights_for_eval(ckpt_path)
            results.extend(self._evaluation_loop(stage))
            if verbose and self.is_global_zero:
                _print_results(stage, results)

        self._run(stage, model, datamodule, run)
        return results

    def _run_validation(self) -> None:
        self._evaluation_loop("validate")
        self.fit_state.validated_at = self.fit_state.batches_done

    def _sanity_check(self) -> None:
        if not self._validation_enabled() or self.num_sanity_val_steps == 0:
            return
        model, callbacks = self.lightning_module, self._callbacks
        rng = rng_states()  # the sanity check never changes what training draws
        self.sanity_checking = True
        callbacks.on_sanity_check_start(self, model)
        self._evaluation_loop("validate")
        callbacks.on_sanity_check_end(self, model)
        self.sanity_checking = False
        self._logs.callback_metrics.clear()
        self._logs.logged_metrics.clear()
        self._logs._prog_bar.clear()
        set_rng_states(rng)

    def _evaluation_loop(self, stage: str) -> list[dict[str, float]]:
        """One pass over the validation or test dataloaders; returns epoch metrics per dataloader."""
        model, callbacks, logs = self.lightning_module, self._callbacks, self._logs
        hooks = _EvalHooks(stage, callbacks, model)
        loaders = self.val_dataloaders if stage == "validate" else self.test_dataloaders
        limits = self.num_val_batches if stage == "validate" else self.num_test_batches
        if self.sanity_checking:
            limits = [min(n, self.num_sanity_val_steps if self.num_sanity_val_steps >= 0 else math.inf)
                      for n in limits]
        was_training = model.training
        model.eval()
        logs.use("eval")
        logs.reset_stage()
        logs.hook = hooks.names.start
        hooks.start(self, model)
        hooks.model_start()
        logs.hook = hooks.names.epoch_start
        hooks.epoch_start(self, model)
        hooks.model_epoch_start()
        several = len(loaders) > 1
        with torch.inference_mode() if self.inference_mode else torch.no_grad():
            for dataloader_idx, loader in enumerate(loaders):
                logs.dataloader_idx = dataloader_idx if several else None
                for batch_idx, batch in enumerate(loader):
                    if batch_idx >= limits[dataloader_idx]:
                        break
                    batch = self._to_device(batch, dataloader_idx)
                    logs.start_batch(batch)
                    extra = (dataloader_idx,) if several else ()
                    logs.hook = hooks.names.batch_start
                    hooks.batch_start(self, model, batch, batch_idx, *extra)
                    hooks.model_batch_start(batch, batch_idx, *extra)
                    logs.hook = hooks.names.step
                    with self._precision.forward_context():
                        outputs = hooks.step(batch, batch_idx, *extra)
                    logs.hook = hooks.names.batch_end
                    hooks.batch_end(self, model, outputs, batch, batch_idx, *extra)
                    hooks.model_batch_end(outputs, batch, batch_idx, *extra)
            logs.dataloader_idx = None
            logs.hook = hooks.names.epoch_end
            hooks.epoch_end(self, model)
            hooks.model_epoch_end()
        metrics = logs.end_epoch()
        if not self.sanity_checking:
            self._send_to_loggers(metrics)
        logs.hook = hooks.names.end
        hooks.end(self, model)
        hooks.model_end()
        logs.hook = None
        model.train(was_training)
        return _split_by_dataloader(metrics, len(loaders))

    def predict(self, model: Module | None = None, dataloaders: Any = None, datamodule: DataModule | None = None,
                return_predictions: bool | None = None, ckpt_path: Any = None) -> list[Any] | None:
        """Run `predict_step` over the predict dataloaders; returns the outputs (a list per dataloader
        when there are several)."""
        if isinstance(dataloaders, DataModule):
            datamodule, dataloaders = dataloaders, None
        model = model or self.lightning_module
        self._check_sources(model, dataloaders, datamodule, "predict", "dataloaders")
        keep = True if return_predictions is None else return_predictions
        results: list[list[Any]] = []

        def run() -> None:
            self._setup_stage("predict")
            self._connect_eval_data("predict", dataloaders)
            self._load_weights_for_eval(ckpt_path)
            results.extend(self._predict_loop(keep))

        self._run("predict", model, datamodule, run)
        if not keep:
            return None
        return results[0] if len(results) == 1 else results

    def _predict_loop(self, keep: bool) -> list[list[Any]]:
        model, callbacks = self.lightning_module, self._callbacks
        model.eval()
        callbacks.on_predict_start(self, model)
        model.on_predict_start()
        callbacks.on_predict_epoch_start(self, model)
        model.on_predict_epoch_start()
        several = len(self.predict_dataloaders) > 1
        outputs_per_loader: list[list[Any]] = []
        with torch.inference_mode() if self.inference_mode else torch.no_grad():
            for dataloader_idx, loader in enumerate(self.predict_dataloaders):
                outputs: list[Any] = []
                for batch_idx, batch in enumerate(loader):
                    if batch_idx >= self.num_predict_batches[dataloader_idx]:
                        break
                    batch = self._to_device(batch, dataloader_idx)
                    extra = (dataloader_idx,) if several else ()
                    callbacks.on_predict_batch_start(self, model, batch, batch_idx, *extra)
                    model.on_predict_batch_start(batch, batch_idx, *extra)
                    with self._precision.forward_context():
                        output = model.predict_step(batch, batch_idx, *extra)
                    callbacks.on_predict_batch_end(self, model, output, batch, batch_idx, *extra)
                    model.on_predict_batch_end(output, batch, batch_idx, *extra)
                    if keep:
                        outputs.append(output)
                outputs_per_loader.append(outputs)
        callbacks.on_predict_epoch_end(self, model)
        model.on_predict_epoch_end()
        callbacks.on_predict_end(self, model)
        model.on_predict_end()
        return outputs_per_loader

    # --- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False,
                        storage_options: Any = None) -> None:
        """Write a checkpoint of the whole run (or of the weights only) atomically.

        Example:
            >>> trainer.save_checkpoint("runs/manual.ckpt")
        """
        if self.lightning_module is None:
            raise RuntimeError("trainer.save_checkpoint() needs a model: call it during or after fit/validate/"
                               "test/predict.")
        checkpoint = self._checkpoint_dict(weights_only)
        if self.state == "fit":
            # the loggers' files first: after a kill, what was logged is never behind the checkpoint
            self._flush_step_logs()
            for logger in self.loggers:
                logger.save()
        if self.is_global_zero:
            save_checkpoint(checkpoint, filepath)
        self.strategy.barrier("save_checkpoint")

    def _checkpoint_dict(self, weights_only: bool) -> dict[str, Any]:
        model = self.lightning_module
        checkpoint: dict[str, Any] = {
            "ember_version": __version__,
            LIGHTNING_VERSION_KEY: LIGHTNING_VERSION_VALUE,
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
        }
        if model._hparams_name:
            checkpoint["hparams_name"] = model._hparams_name
        if self.datamodule is not None and self.datamodule.hparams:
            checkpoint["datamodule_hyper_parameters"] = to_plain(dict(self.datamodule.hparams))
        if not weights_only:
            checkpoint.update(
                loops=self.fit_state.state_dict(),
                optimizers={str(i): {"class": type(o).__name__, "state": o.state_dict()}
                            for i, o in enumerate(self.optimizers)},
                lr_schedulers={str(i): {"class": type(c.scheduler).__name__, "state": c.scheduler.state_dict()}
                               for i, c in enumerate(self.lr_scheduler_configs)},
                precision=self._precision.state_dict(),
                callbacks={c.state_key: c.state_dict() for c in self._all_callbacks()},
                logs=self._logs.state_dict(model),
                loggers={str(i): lg.state_dict() for i, lg in enumerate(self.loggers)},
                datamodule=self.datamodule.state_dict() if self.datamodule is not None else {},
                rng=rng_states(),
            )
        self._callbacks.on_save_checkpoint(self, model, checkpoint)
        model.on_save_checkpoint(checkpoint)
        checkpoint["hyper_parameters"] = to_plain(checkpoint["hyper_parameters"])
        return checkpoint

    def _read_checkpoint_for_fit(self, ckpt_path: Any) -> dict[str, Any] | None:
        if ckpt_path is None:
            return None
        if ckpt_path == "last":
            found = self._find_last_checkpoint()
            if found is None:
                print(f"ckpt_path='last': no last checkpoint under {self.default_root_dir!r}; starting from "
                      "scratch.")
                return None
            ckpt_path = found
        elif ckpt_path in ("best", "hpc"):
            raise ValueError(f"fit(ckpt_path={ckpt_path!r}) is not supported; pass 'last' or a path.")
        checkpoint = load_checkpoint(ckpt_path, map_location="cpu")
        if "loops" not in checkpoint:
            raise CheckpointError(
                f"{str(ckpt_path)!r} holds weights only (saved with save_weights_only=True or by another "
                "tool), so training cannot resume from it. Load the weights with "
                "Module.load_from_checkpoint(path) and call fit without ckpt_path.")
        self.ckpt_path = str(ckpt_path)
        return checkpoint

    def _find_last_checkpoint(self) -> str | None:
        """The newest `last*.ckpt` of this run (checkpoint folders, then under default_root_dir), else the
        newest checkpoint in the checkpoint folders."""
        folders = [Path(c.dirpath) for c in self._all_callbacks() if getattr(c, "dirpath", None)]
        for pattern, places in (("last*.ckpt", folders + [Path(self.default_root_dir)]), ("*.ckpt", folders)):
            found = [p for folder in places if folder.is_dir() for p in folder.rglob(pattern) if p.is_file()]
            if found:
                return str(max(found, key=lambda p: p.stat().st_mtime_ns))
        return None

    def _restore_logger_identity(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("loggers", {})
        for i, logger in enumerate(self.loggers):
            if str(i) in saved:
                logger.load_state_dict(saved[str(i)])

    def _restore(self, checkpoint: dict[str, Any], ckpt_path: Any) -> None:
        model = self.lightning_module
        model.on_load_checkpoint(checkpoint)
        self._callbacks.on_load_checkpoint(self, model, checkpoint)
        load_weights(model, checkpoint["state_dict"], source=f"the checkpoint {str(ckpt_path)!r}")
        _load_numbered("optimizers", checkpoint["optimizers"], self.optimizers, ckpt_path)
        _load_numbered("lr_schedulers", checkpoint["lr_schedulers"],
                       [c.scheduler for c in self.lr_scheduler_configs], ckpt_path)
        self._precision.load_state_dict(checkpoint.get("precision", {}))
        saved_callbacks = checkpoint.get("callbacks", {})
        for callback in self._callbacks:
            if callback.state_key in saved_callbacks:
                callback.load_state_dict(saved_callbacks[callback.state_key])
        if self.datamodule is not None:
            self.datamodule.load_state_dict(checkpoint.get("datamodule", {}))
        loops = checkpoint["loops"]
        self.current_epoch, self.global_step = loops["epoch"], loops["global_step"]
        self.fit_state.batches_done, self.fit_state.validated_at = loops["batches_done"], loops.get("validated_at", -1)
        if loops["epoch_finished"]:
            self.current_epoch, self.fit_state.batches_done, self.fit_state.validated_at = self.current_epoch + 1, 0, -1
        elif self.fit_state.batches_done > 0:
            self._logs.load_state_dict(checkpoint["logs"], model)
            if not self._train_resumable:
                warn_not_resumable(self.train_dataloader)
        for logger in self.loggers:
            logger.resume_at(self.global_step)
        set_rng_states(checkpoint["rng"])  # last: nothing after this may draw random numbers before training

    def _load_weights_for_eval(self, ckpt_path: Any) -> None:
        if ckpt_path is None:
            return
        if ckpt_path == "best":
            callback = self.checkpoint_callback
            if callback is None:
                raise ValueError(f"{self.state}(ckpt_path='best') needs a ModelCheckpoint callback, and this "
                                 "Trainer has none. Pass a path, or add ModelCheckpoint(monitor=...) to callbacks.")
            if not callback.best_model_path:
                raise ValueError(f"{self.state}(ckpt_path='best'): the ModelCheckpoint has saved no best "
                                 "checkpoint yet (is `monitor` set and was fit run?). Pass ckpt_path='last' "
                                 "or a path.")
            ckpt_path = callback.best_model_path
        elif ckpt_path == "last":
            ckpt_path = self._find_last_checkpoint()
            if ckpt_path is None:
                raise ValueError(f"{self.state}(ckpt_path='last'): no last checkpoint found under "
                                 f"{self.default_root_dir!r}.")
        checkpoint = load_checkpoint(ckpt_path, map_location="cpu")
        self.lightning_module.on_load_checkpoint(checkpoint)
        load_weights(self.lightning_module, checkpoint["state_dict"], source=f"the checkpoint {str(ckpt_path)!r}")
        self.ckpt_path = str(ckpt_path)

    # --- setup and teardown ----------------------------------------------------------------------

    def _run(self, stage: str, model: Module, datamodule: DataModule | None, body: Any) -> None:
        self.state = stage
        self.lightning_module = model
        model.trainer = self
        if datamodule is not None:
            self.datamodule = datamodule
            datamodule.trainer = self
        self._callbacks = CallbackList(_ordered(self.callbacks + _as_list(model.configure_callbacks())))
        self._batches_as_they_come = self._batches_need_no_transfer()
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.deterministic == "warn")
        if self.benchmark is not None:
            torch.backends.cudnn.benchmark = self.benchmark
        anomaly = torch.autograd.set_detect_anomaly(True) if self.detect_anomaly else None
        status = "success"
        try:
            body()
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            self._callbacks.on_exception(self, model, err)
            raise
        finally:
            if anomaly is not None:
                torch.autograd.set_detect_anomaly(False)
            self._teardown(stage, status)

    def _setup_stage(self, stage: str) -> None:
        model, datamodule = self.lightning_module, self.datamodule
        self.strategy.setup_environment()
        if datamodule is not None:
            if self.is_global_zero:
                datamodule.prepare_data()
            self.strategy.barrier("prepare_data")
            datamodule.setup(stage)
        if self.is_global_zero:
            model.prepare_data()
        self._callbacks.setup(self, model, stage)
        model.setup(stage)
        self._precision.convert_module(model)
        self.strategy.setup_module(model)

    def _teardown(self, stage: str, status: str) -> None:
        model = self.lightning_module
        self._logs.hook = None
        if self.datamodule is not None:
            self.datamodule.teardown(stage)
        self._callbacks.teardown(self, model, stage)
        model.teardown(stage)
        for logger in self.loggers:
            logger.finalize(status)
        self.state = None

    def _configure_optimizers(self) -> None:
        model = self.lightning_module
        result = model.configure_optimizers()
        self.optimizers, self.lr_scheduler_configs = parse_optimizers(result, type(model).__name__)
        if model.automatic_optimization and len(self.optimizers) > 1:
            raise ValueError(
                f"{type(model).__name__}.configure_optimizers returned {len(self.optimizers)} optimizers; "
                "automatic optimization steps one. Set `self.automatic_optimization = False` in __init__ "
                "and step them in training_step with self.optimizers() and self.manual_backward(loss).")
        self._manual_optimizers = [ManualOptimizer(o, self) for o in self.optimizers]
        self._flush_due = False
        overridden = type(model).configure_gradient_clipping is not Module.configure_gradient_clipping
        self._clip_each_step = bool(self.gradient_clip_val) or overridden
        if self.gradient_clip_val and not model.automatic_optimization:
            raise ValueError("Trainer(gradient_clip_val=...) clips in automatic optimization only; with "
                             "manual optimization call self.clip_gradients(opt, gradient_clip_val=...) "
                             "in training_step.")
        self.fit_state.stepped = False

    def _log_hyperparams(self) -> None:
        params = dict(self.lightning_module.hparams)
        if self.datamodule is not None:
            params.update(self.datamodule.hparams)
        for logger in self.loggers:
            logger.log_hyperparams(params)
            logger.log_graph(self.lightning_module, self.lightning_module.example_input_array)

    def _send_to_loggers(self, metrics: Mapping[str, torch.Tensor], step: int | None = None) -> None:
        if not metrics or not self.loggers or not self.is_global_zero:
            return
        # note: a host-device sync point, once per log_every_n_steps and once per epoch
        values = {k: v.item() for k, v in metrics.items()}
        values["epoch"] = self.current_epoch
        step = max(self.global_step - 1, 0) if step is None else step
        for logger in self.loggers:
            logger.log_metrics(values, step)

    # --- data ------------------------------------------------------------------------------------

    def _check_sources(self, model: Any, loaders: Any, datamodule: Any, stage: str, argument: str) -> None:
        if model is None:
            raise TypeError(f"trainer.{stage}() needs a model: pass trainer.{stage}(model, ...). (Without one, "
                            "the model of the last fit is used; there was none.)")
        if not isinstance(model, Module):
            raise TypeError(f"trainer.{stage}(model) expects an ember.Module (LightningModule), got "
                            f"{type(model).__name__}. Subclass ember.Module and define training_step and "
                            "configure_optimizers.")
        if loaders is not None and datamodule is not None:
            raise ValueError(f"trainer.{stage}() got both {argument} and datamodule; pass one of them.")
        if datamodule is not None and not isinstance(datamodule, DataModule):
            raise TypeError(f"trainer.{stage}(datamodule=...) expects an ember.DataModule, got "
                            f"{type(datamodule).__name__}.")

    def _connect_train_data(self, loaders: Any) -> None:
        model, datamodule = self.lightning_module, self.datamodule
        if loaders is None:
            source = datamodule if datamodule is not None else model
            if not hasattr(source, "train_dataloader"):
                raise ValueError("trainer.fit() found no training data: pass train_dataloaders, a datamodule, "
                                 "or define train_dataloader() on the model.")
            loaders = source.train_dataloader()
        if isinstance(loaders, (list, tuple, Mapping)):
            raise TypeError("trainer.fit(train_dataloaders=...) takes one DataLoader; combine several into one "
                            "dataset or loader.")
        as_loader_list(loaders, "train_dataloaders")
        loader = self.strategy.prepare_train_loader(loaders, self.fit_state.data_seed)
        self.train_dataloader, self._train_resumable = make_resumable(loader, self.fit_state.data_seed)
        self.num_training_batches = _limited(loader_length(self.train_dataloader), self.limit_train_batches,
                                             "limit_train_batches")
        self._val_every = self._validation_interval()

    def _connect_eval_data(self, stage: str, loaders: Any) -> None:
        model, datamodule = self.lightning_module, self.datamodule
        method = {"validate": "val_dataloader", "test": "test_dataloader", "predict": "predict_dataloader"}[stage]
        if loaders is None:
            source = datamodule if datamodule is not None and hasattr(datamodule, method) else model
            loaders = getattr(source, method)() if hasattr(source, method) else None
            if loaders is None and stage != "validate":
                raise ValueError(f"trainer.{stage}() found no data: pass dataloaders=..., a datamodule, or "
                                 f"define {method}() on the model or datamodule.")
        loaders = [_quiet_generator(lo) for lo in as_loader_list(loaders, f"{stage} dataloaders")]
        limit = {"validate": self.limit_val_batches, "test": self.limit_test_batches,
                 "predict": self.limit_predict_batches}[stage]
        counts = [_limited(loader_length(lo), limit, f"limit_{stage[:4] if stage != 'validate' else 'val'}_batches")
                  for lo in loaders]
        if stage == "validate":
            self.val_dataloaders, self.num_val_batches = loaders, counts
        elif stage == "test":
            self.test_dataloaders, self.num_test_batches = loaders, counts
        else:
            self.predict_dataloaders, self.num_predict_batches = loaders, counts

    def _train_loader_for_epoch(self, start: int) -> Iterable:
        loader = self.train_dataloader
        sampler = getattr(loader, "batch_sampler", None)
        if self._train_resumable:
            sampler.sampler.set_epoch(self.current_epoch)
            sampler.start = start
            loader.generator.manual_seed(self.fit_state.data_seed + self.current_epoch)
            return loader
        for obj in (getattr(loader, "sampler", None), sampler):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(self.current_epoch)
        return _skip(loader, start)

    def _to_device(self, batch: Any, dataloader_idx: int) -> Any:
        if self._batches_as_they_come:
            return batch
        model, datamodule = self.lightning_module, self.datamodule
        batch = model.on_before_batch_transfer(batch, dataloader_idx)
        if datamodule is not None and _overrides(datamodule, DataModule, "transfer_batch_to_device"):
            batch = datamodule.transfer_batch_to_device(batch, self.strategy.root_device, dataloader_idx)
        else:
            batch = model.transfer_batch_to_device(batch, self.strategy.root_device, dataloader_idx)
        batch = self._precision.convert_input(batch)
        return model.on_after_batch_transfer(batch, dataloader_idx)

    def _batches_need_no_transfer(self) -> bool:
        """On the CPU, with no batch-transfer hook overridden and float32 inputs, a DataLoader's batches
        are already what the step needs: `_to_device` then returns them untouched."""
        model, datamodule = self.lightning_module, self.datamodule
        hooks = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
        return (self.strategy.root_device.type == "cpu" and self._precision.param_dtype is None
                and not any(_overrides(model, Module, hook) for hook in hooks)
                and not (datamodule is not None and _overrides(datamodule, DataModule, "transfer_batch_to_device")))

    # --- when things happen ----------------------------------------------------------------------

    def _validation_enabled(self) -> bool:
        overridden = type(self.lightning_module).validation_step is not Module.validation_step
        return overridden and bool(self.val_dataloaders) and any(n > 0 for n in self.num_val_batches)

    def _validation_interval(self) -> float:
        """Validate after every this many training batches (inf: at the end of an epoch of unknown length)."""
        interval = self.val_check_interval
        n = self.num_training_batches
        if isinstance(interval, int) and not isinstance(interval, bool):
            return interval
        if n == math.inf:
            return math.inf
        return max(1, int(n * interval))

    def _should_validate(self, batches_done: int) -> bool:
        if self._val_every == math.inf or not self._validation_enabled():
            return False
        every_n = self.check_val_every_n_epoch
        if every_n is not None and (self.current_epoch + 1) % every_n != 0:
            return False
        return batches_done % self._val_every == 0 or (
            batches_done == self.num_training_batches and self._val_every >= self.num_training_batches)

    def _stop_mid_epoch(self) -> bool:
        if self.max_steps != -1 and self.global_step >= self.max_steps:
            return True
        if self.max_time is not None and time.monotonic() - self._start_time >= self.max_time:
            self.should_stop = True
            return True
        return self.should_stop and self._min_reached()

    def _min_reached(self) -> bool:
        return self.current_epoch + 1 >= self.min_epochs and self.global_step >= self.min_steps

    def _fit_done(self) -> bool:
        if self.max_steps != -1 and self.global_step >= self.max_steps:
            return True
        if self.max_epochs != -1 and self.current_epoch >= self.max_epochs:
            return True
        if self.should_stop:
            if self.current_epoch >= self.min_epochs and self.global_step >= self.min_steps:
                return True
            self.should_stop = False  # min_epochs / min_steps not reached yet: keep training
        return self.num_training_batches == 0

    def _loader_exhausted(self, last_batch_idx: int) -> bool:
        # an iterable without a length ended on its own rather than by a limit or a stop
        return self.num_training_batches == math.inf and not (
            self.max_steps != -1 and self.global_step >= self.max_steps) and not self.should_stop

    def _step_schedulers(self, interval: str) -> None:
        for config in self.lr_scheduler_configs:
            if config.interval != interval:
                continue
            count = self.global_step if interval == "step" else self.current_epoch + 1
            if count % config.frequency != 0:
                continue
            if config.reduce_on_plateau:
                value = self.callback_metrics.get(config.monitor)
                if value is None:
                    if config.strict:
                        raise KeyError(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged. Logged keys: "
                            f"{sorted(self.callback_metrics)}. Set 'monitor' in the lr_scheduler dict to one "
                            "of them, or 'strict': False to skip steps without it.")
                    continue
                config.scheduler.step(value)
            else:
                config.scheduler.step()


class _EvalHooks:
    """The hooks of the validation or the test loop, looked up once by their names."""

    @dataclass
    class Names:
        start: str
        epoch_start: str
        batch_start: str
        step: str
        batch_end: str
        epoch_end: str
        end: str

    def __init__(self, stage: str, callbacks: CallbackList, model: Module):
        if stage == "validate":
            self.start, self.model_start = callbacks.on_validation_start, model.on_validation_start
            self.epoch_start, self.model_epoch_start = (callbacks.on_validation_epoch_start,
                                                        model.on_validation_epoch_start)
            self.batch_start, self.model_batch_start = (callbacks.on_validation_batch_start,
                                                        model.on_validation_batch_start)
            self.step = model.validation_step
            self.batch_end, self.model_batch_end = callbacks.on_validation_batch_end, model.on_validation_batch_end
            self.epoch_end, self.model_epoch_end = callbacks.on_validation_epoch_end, model.on_validation_epoch_end
            self.end, self.model_end = callbacks.on_validation_end, model.on_validation_end
            word = "validation"
        else:
            self.start, self.model_start = callbacks.on_test_start, model.on_test_start
            self.epoch_start, self.model_epoch_start = callbacks.on_test_epoch_start, model.on_test_epoch_start
            self.batch_start, self.model_batch_start = callbacks.on_test_batch_start, model.on_test_batch_start
            self.step = model.test_step
            self.batch_end, self.model_batch_end = callbacks.on_test_batch_end, model.on_test_batch_end
            self.epoch_end, self.model_epoch_end = callbacks.on_test_epoch_end, model.on_test_epoch_end
            self.end, self.model_end = callbacks.on_test_end, model.on_test_end
            word = "test"
        self.names = self.Names(f"on_{word}_start", f"on_{word}_epoch_start", f"on_{word}_batch_start",
                                f"{word}_step", f"on_{word}_batch_end", f"on_{word}_epoch_end", f"on_{word}_end")


# --- helpers: they decide what, the loops decide when ----------------------------------------------


def _check_step_output(output: Any, manual: bool) -> torch.Tensor | None:
    """The loss in what training_step returned, or a clear error."""
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        loss = output
    elif isinstance(output, Mapping):
        if "loss" not in output:
            if manual:
                return None
            raise ValueError(f"training_step returned a dict without a 'loss' key (keys: {sorted(output)}). "
                             "Return the loss tensor, or a dict with 'loss'.")
        loss = output["loss"]
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"training_step returned {{'loss': {type(loss).__name__}}}; the loss must be a tensor.")
    else:
        raise TypeError(
            f"training_step returned a {type(output).__name__}; expected the loss as a tensor, a dict with a "
            "'loss' tensor, or None to skip the batch.")
    if manual:
        return loss
    if loss.numel() != 1:
        raise ValueError(f"training_step returned a loss of shape {tuple(loss.shape)}; it must be a scalar "
                         "(reduce it with .mean() or .sum()).")
    if not loss.requires_grad:
        raise ValueError("training_step returned a loss that does not require grad: it was computed without "
                         "any trainable parameter (frozen model, .detach(), or torch.no_grad()).")
    return loss


def _load_numbered(what: str, saved: Mapping[str, Any], objects: list[Any], ckpt_path: Any) -> None:
    classes = [saved[k]["class"] for k in sorted(saved, key=int)]
    mine = [type(o).__name__ for o in objects]
    if classes != mine:
        raise CheckpointError(f"The checkpoint {str(ckpt_path)!r} holds {what} {classes}, but "
                              f"configure_optimizers built {mine}. Resume with the same optimizers and "
                              "schedulers, or load only the weights with Module.load_from_checkpoint.")
    for i, obj in enumerate(objects):
        obj.load_state_dict(saved[str(i)]["state"])


def _build_loggers(logger: Any, root: str) -> list[Any]:
    from ember.loggers.base import Logger

    if logger is None or logger is True:
        from ember.loggers.csv import CSVLogger

        return [CSVLogger(root, name="ember_logs")]
    if logger is False:
        return []
    loggers = _as_list(logger)
    for item in loggers:
        if not isinstance(item, Logger):
            raise TypeError(f"Trainer(logger=...) got a {type(item).__name__}; expected True, False, an "
                            "ember.loggers.Logger, or a list of them.")
    return loggers


def _build_callbacks(callbacks: Any, enable_checkpointing: bool | None, enable_progress_bar: bool | None,
                     enable_model_summary: bool | None) -> list[Callback]:
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.callbacks.progress import ProgressBar
    from ember.callbacks.summary import ModelSummary

    callbacks = _as_list(callbacks)
    for item in callbacks:
        if not isinstance(item, Callback):
            raise TypeError(f"Trainer(callbacks=...) got a {type(item).__name__}; expected ember.Callback objects.")
    has_checkpoint = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    if enable_checkpointing is False and has_checkpoint:
        raise ValueError("Trainer(enable_checkpointing=False) but callbacks include a ModelCheckpoint; remove one "
                         "of them.")
    if enable_checkpointing is not False and not has_checkpoint:
        callbacks.append(ModelCheckpoint())
    if enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar())
    if enable_model_summary is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ModelSummary())
    return callbacks


def _ordered(callbacks: list[Callback]) -> list[Callback]:
    """Checkpoint callbacks run last, so they see what every other callback did this step."""
    from ember.callbacks.model_checkpoint import ModelCheckpoint

    return [c for c in callbacks if not isinstance(c, ModelCheckpoint)] + \
        [c for c in callbacks if isinstance(c, ModelCheckpoint)]


def _overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(type(obj), name) is not getattr(base, name)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Trainer({name}={value!r}) must be an integer >= {minimum}.")
    return value


def _check_limit(name: str, value: Any) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"Trainer({name}={value!r}) must be a fraction in [0.0, 1.0] or a number of batches.")
    if isinstance(value, float) and value > 1.0:
        raise ValueError(f"Trainer({name}={value}) is a float above 1.0; pass a fraction in [0.0, 1.0] or an "
                         f"int number of batches ({name}={int(value)}).")
    return value


def _limited(length: int | None, limit: int | float, name: str) -> float:
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(limit, length) if length is not None else limit
    if length is None:
        if limit not in (0.0, 1.0):
            raise ValueError(f"Trainer({name}={limit}) is a fraction, but the dataloader has no length; pass an "
                             "int number of batches.")
        return math.inf if limit == 1.0 else 0
    return int(length * limit) if limit < 1.0 else length


def _parse_max_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return timedelta(**value).total_seconds()
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            d, h, m, s = map(int, parts)
            return timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()
    raise ValueError(f"Trainer(max_time={value!r}): expected 'DD:HH:MM:SS', a dict such as {{'hours': 1}}, or a "
                     "datetime.timedelta.")


def _draw_seed() -> int:
    """The seed of the training data order: from seed_everything if it was called, else drawn once."""
    from ember.seed import current_seed

    seed = current_seed()
    return seed if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())


def _quiet_generator(loader: Any) -> Any:
    """Give an evaluation DataLoader its own generator, so iterating it draws nothing from the global one."""
    if isinstance(loader, torch.utils.data.DataLoader) and loader.generator is None:
        loader.generator = private_generator(0)
    return loader


def _skip(loader: Iterable, start: int) -> Iterator:
    """Iterate `loader` from batch `start` by loading and dropping the batches before it."""
    iterator = iter(loader)
    for _ in range(start):
        next(iterator, None)
    return iterator


def _split_by_dataloader(metrics: Mapping[str, torch.Tensor], count: int) -> list[dict[str, float]]:
    results: list[dict[str, float]] = [{} for _ in range(max(count, 1))]
    for name, value in metrics.items():
        index = 0
        if "/dataloader_idx_" in name:
            index = int(name.rsplit("_", 1)[1])
        results[index][name] = value.item()
    return results


def _print_results(stage: str, results: list[dict[str, float]]) -> None:
    for i, metrics in enumerate(results):
        if not metrics:
            continue
        title = f"{stage} metrics" + (f" (dataloader {i})" if len(results) > 1 else "")
        width = max(len(k) for k in metrics)
        print(title)
        for name in sorted(metrics):
            print(f"  {name:<{width}}  {metrics[name]:.6g}")


def _unknown_argument_message(unknown: Mapping[str, Any]) -> str:
    lines = []
    valid = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]
    for name in unknown:
        if name in REMOVED_ARGUMENTS:
            lines.append(f"Trainer({name}=...) was removed in Lightning 2.0 and ember does not take it; use "
                         f"{REMOVED_ARGUMENTS[name]} instead.")
        else:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            lines.append(f"Trainer() got an unknown argument {name!r}.{hint} Valid arguments: {', '.join(valid)}.")
    return "\n".join(lines)
