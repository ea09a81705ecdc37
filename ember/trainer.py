"""Trainer: fit, validate, test and predict a Module.

This file holds the entry points and the fit loop, read top to bottom: `fit` -> `_fit` -> `_train_epoch` ->
`_train_batch`. The loops decide *when*; what happens is decided elsewhere, each in one place: `schedule.py` (when
to validate, step, stop), `optimization.py` (backward, steps, schedulers), `evaluation.py` (validation, test and
predict loops), `data.py` (loaders, batch transfer; `samplers.py`, resumable order), `stages.py` (set-up and
teardown of a stage), `checkpoint.py` (the checkpoint's named parts), `arguments.py` (argument checks), `state.py`
(the loop state). The order of the hooks is the table in docs/hooks.md.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from typing import Any

import torch

from ember import schedule
from ember.arguments import (as_list, build_callbacks, build_loggers, check_clipping, check_fast_dev_run, check_int,
                             check_limit, check_sources, merge_callbacks, ordered_callbacks, parse_max_time,
                             split_judges, unknown_argument_message)
from ember.callbacks.base import CallbackList
from ember.checkpoint import restore
from ember.data import DataConnector, DataModule
from ember.evaluation import EvalContext, EvalHooks, evaluation_loop, predict_loop, print_results, sanity_check
from ember.interrupts import GracefulInterrupt
from ember.logs import LogCollector, LoggerFeed
from ember.module import Module
from ember.optimization import Optimization, check_step_output
from ember.precision import Precision, parse_precision
from ember.resume import Checkpointing
from ember.stages import StageSetup
from ember.state import FitState
from ember.strategies import Strategy, launched, select_strategy
from ember.trainer_properties import TrainerProperties

log = logging.getLogger("ember")

class Trainer(TrainerProperties, Checkpointing, StageSetup):
    """Runs fit / validate / test / predict for a `Module`, with Lightning 2.x's arguments.

    Example:
        >>> trainer = ember.Trainer(max_epochs=3, precision="bf16-mixed", gradient_clip_val=1.0)
        >>> trainer.fit(model, train_loader, val_loader)
        >>> trainer.test(ckpt_path="best")
    """

    _default_logger = "ember"  # what logger=True / None gives: see arguments.build_loggers

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
        overfit_batches: int | float = 0.0,
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
            valid = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]
            raise TypeError(unknown_argument_message(unknown, valid))
        self.strategy: Strategy = select_strategy(strategy, accelerator, devices, num_nodes)
        self.precision = parse_precision(precision)
        self._precision = Precision(self.precision, self.strategy.root_device.type)
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()

        self.fast_dev_run = fast_dev_run = check_fast_dev_run(fast_dev_run)
        if fast_dev_run:
            limit_train_batches = limit_val_batches = limit_test_batches = limit_predict_batches = fast_dev_run
            max_steps, max_epochs, num_sanity_val_steps, val_check_interval = fast_dev_run, 1, 0, 1.0
            logger = False
        # overfit_batches: the same first N batches (or fraction) of training and of validation, unshuffled
        self.overfit_batches = check_limit("overfit_batches", overfit_batches)
        if self.overfit_batches:
            limit_train_batches = limit_val_batches = self.overfit_batches

        self.max_steps = check_int("max_steps", max_steps, minimum=-1)
        if max_epochs is None:
            max_epochs = 1000 if max_steps == -1 and max_time is None else -1
        self.max_epochs = check_int("max_epochs", max_epochs, minimum=-1)
        self.min_epochs = check_int("min_epochs", min_epochs or 0, minimum=0)
        self.min_steps = check_int("min_steps", min_steps or 0, minimum=0)
        self.max_time = parse_max_time(max_time)
        self.limit_train_batches = check_limit("limit_train_batches", limit_train_batches)
        self.limit_val_batches = check_limit("limit_val_batches", limit_val_batches)
        self.limit_test_batches = check_limit("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = check_limit("limit_predict_batches", limit_predict_batches)
        self.val_check_interval = check_limit("val_check_interval", val_check_interval)
        if check_val_every_n_epoch is not None:
            check_int("check_val_every_n_epoch", check_val_every_n_epoch, minimum=1)
        elif not isinstance(self.val_check_interval, int):
            raise ValueError(f"Trainer(check_val_every_n_epoch=None) counts validation by batches across epochs, "
                             f"so val_check_interval must be an int number of batches, not "
                             f"{self.val_check_interval!r}.")
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = check_int("num_sanity_val_steps",
                                              2 if num_sanity_val_steps is None else num_sanity_val_steps, -1)
        self.log_every_n_steps = check_int("log_every_n_steps", 50 if log_every_n_steps is None
                                           else log_every_n_steps, minimum=1)
        self.accumulate_grad_batches = check_int("accumulate_grad_batches", accumulate_grad_batches, minimum=1)
        self.gradient_clip_val, self.gradient_clip_algorithm = check_clipping(gradient_clip_val, gradient_clip_algorithm)
        self.deterministic = deterministic
        self.benchmark = benchmark
        self.inference_mode = inference_mode
        self.use_distributed_sampler = use_distributed_sampler
        self.detect_anomaly = detect_anomaly
        self.barebones = barebones
        self.reload_dataloaders_every_n_epochs = check_int("reload_dataloaders_every_n_epochs",
                                                           reload_dataloaders_every_n_epochs, minimum=0)
        self.num_nodes = num_nodes

        if barebones:
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
        self.loggers = build_loggers(logger, self.default_root_dir, self._default_logger)
        self.callbacks = build_callbacks(callbacks, enable_checkpointing, enable_progress_bar,
                                         enable_model_summary)

        self.fit_state = FitState()  # every loop counter; saved whole in every checkpoint
        self.state: str | None = None  # 'fit', 'validate', 'test', 'predict' while running
        self.sanity_checking = False
        self.training = False
        self.interrupted = False  # the last fit stopped on Ctrl-C / SIGTERM
        self.lightning_module: Module | None = None
        self.datamodule: DataModule | None = None
        self.optimization: Optimization | None = None  # the optimizers and steps of the current fit
        self._callbacks = CallbackList()
        self._callbacks_of: Module | None = None  # the model whose configure_callbacks were merged in
        self.log_collector = LogCollector()  # what self.log records; the Module logs through it
        self.log_collector.strategy = self.strategy if self.strategy.world_size > 1 else None
        self._data = DataConnector(self, self._precision, Module)
        self.train_dataloader: Any = None
        self._eval_loaders: dict[str, list[Any]] = {"validate": [], "test": [], "predict": []}  # (see properties)
        self.num_training_batches: float = 0
        self.num_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self._val_every = math.inf
        self._eval_hooks: dict[str, EvalHooks] = {}  # per stage, made when its dataloaders are connected
        self._start_time = 0.0
        self._feed = LoggerFeed(self)  # what reaches the loggers, from rank zero
        self.ckpt_path: str | None = None  # the checkpoint the last stage loaded

    # --- fit -------------------------------------------------------------------------------------

    @launched  # strategy='ddp_spawn' runs it in new processes
    def fit(self, model: Module, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None) -> None:
        """Train `model`; resume from `ckpt_path` ('last', a path, or None to start fresh).

        Example:
            >>> trainer.fit(model, datamodule=dm, ckpt_path="last")
        """
        if isinstance(train_dataloaders, DataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        check_sources(model, train_dataloaders, datamodule, "fit", "train_dataloaders", Module, DataModule)
        self._run("fit", model, datamodule, lambda: self._fit(train_dataloaders, val_dataloaders, ckpt_path))

    def _fit(self, train_dataloaders: Any, val_dataloaders: Any, ckpt_path: Any) -> None:
        model, callbacks, state = self.lightning_module, self._callbacks, self.fit_state
        self.interrupted = False
        # the checkpoint is read first: it names the logger run that a resumed fit continues
        checkpoint = self._read_checkpoint_for_fit(ckpt_path)
        if checkpoint is not None:
            restore(self._early_parts(), checkpoint, f"The checkpoint {self.ckpt_path!r}")
        self._setup_stage("fit")
        state.data_seed = None if checkpoint is None else state.data_seed  # (None: drawn with the train data)
        self._connect_train_data(train_dataloaders)
        self._connect_eval_data("validate", val_dataloaders)
        self.optimization = Optimization(self, callbacks, self.log_collector, self._precision, state)
        self.optimization.configure()
        if checkpoint is not None:
            self._restore(checkpoint)
        self._feed.hyperparameters()
        self._start_time = time.monotonic()

        callbacks.on_fit_start(self, model)
        model.on_fit_start()
        if checkpoint is None:
            if self.enable_validation and self.num_sanity_val_steps != 0:
                sanity_check(self, self._eval_context())
        self.training = True
        with GracefulInterrupt() as interrupt:
            self._interrupt = interrupt
            with self.log_collector.in_hook("on_train_start"):
                callbacks.on_train_start(self, model)
                model.on_train_start()
            # a checkpoint written inside an epoch resumes inside it, even when the fit is due to stop: the
            # end of that epoch (its hooks, its logged values) has not run yet
            into_epoch = checkpoint is not None and state.batches_done > 0 and not state.epoch_ended
            while into_epoch or not self._fit_done():
                into_epoch = False
                self._train_epoch()
                if interrupt.requested:
                    self._stop_on_interrupt(interrupt.requested)
                    return
            state.finished = True
        self.training = False
        callbacks.on_train_end(self, model)
        model.on_train_end()
        callbacks.on_fit_end(self, model)
        model.on_fit_end()

    def _train_epoch(self) -> None:
        model, callbacks, logs, state = self.lightning_module, self._callbacks, self.log_collector, self.fit_state
        start = state.batches_done  # > 0 only when resuming in the middle of an epoch
        logs.use("train")
        if start == 0:
            self._maybe_reload_dataloaders()
            logs.reset_stage()
        iterator = self._data.epoch_iterator(self.train_dataloader, state.epoch, start, state.data_seed)
        steps_before = state.global_step
        with logs.in_hook("on_train_epoch_start"):  # (no model.train(), as in Lightning: set modes stay)
            callbacks.on_train_epoch_start(self, model)
            model.on_train_epoch_start()

        if start > 0 and state.validated_at != start and self._validation_due():
            # resumed from a checkpoint written after a batch but before the validation that followed it
            self._run_validation()
        stopped = start > 0 and self._stop_mid_epoch()  # resumed after a stop was decided mid-epoch
        batch_idx, exhausted, cut = start - 1, False, False
        validates, several = self.enable_validation and self._val_every != math.inf, self.world_size > 1
        while not stopped and batch_idx + 1 < self.num_training_batches:
            batch = next(iterator, _END)
            if batch is _END:
                exhausted = True  # an iterable without a length ran out
                break
            batch_idx += 1
            if not self._train_batch(batch, batch_idx):  # on_train_batch_start returned -1 (Lightning's rule)
                batch_idx, cut = batch_idx - 1, True  # the epoch ends here; an open window is not stepped
                break
            if validates and self._validation_due():
                self._run_validation()
            if several:
                state.should_stop, signalled = self.strategy.agree_on_stopping(
                    state.should_stop, self._interrupt.requested is not None)
                if signalled and self._interrupt.requested is None:
                    self._interrupt.requested = "a signal on another rank"
            stopped = state.should_stop or self.max_steps != -1 or self.max_time is not None \
                or self._interrupt.requested is not None  # (the common case decided without a call)
            if stopped:
                stopped = self._stop_mid_epoch() or self._interrupt.requested is not None
        state.epoch_finished = batch_idx + 1 >= self.num_training_batches or exhausted or cut
        if exhausted:
            self._end_unsized_epoch(batch_idx)
        if self._interrupt.requested is not None and not state.epoch_finished:
            return  # the checkpoint is written mid-epoch; the epoch's end hooks run when it resumes

        others, judges = self._epoch_end_callbacks  # judges: EarlyStopping, ModelCheckpoint (Lightning's order)
        with logs.in_hook("on_train_epoch_end"):
            self._feed.send(logs.end_epoch())  # the epoch's values, read by every hook below
            others.on_train_epoch_end(self, model)
            model.on_train_epoch_end()
            self._feed.send(logs.end_epoch())  # what they logged here, before a checkpoint is written
            if state.epoch_finished:  # the others stepped with the last batch, unless unknown or cut short
                self.optimization.step_schedulers("epoch", plateau=None if exhausted or cut else True)
            state.epoch_ended = True  # a checkpoint written from here on resumes after this epoch's end
            judges.on_train_epoch_end(self, model)
            self._feed.send(logs.end_epoch())  # what EarlyStopping / ModelCheckpoint logged
        if state.epoch_finished:
            self.optimization.warn_if_no_step(steps_before)
            state.next_epoch()
        self.should_stop = self.strategy.reduce_bool(self.should_stop)

    def _train_batch(self, batch: Any, batch_idx: int) -> bool:
        """Train one batch; False when the Module's on_train_batch_start returned -1 (skip the epoch's rest)."""
        model, callbacks, logs, state = self.lightning_module, self._callbacks, self.log_collector, self.fit_state
        optimization = self.optimization
        hooks = optimization.active_hooks  # the per-step hooks someone implements
        batch = self._data.to_device(batch, 0)
        logs.start_batch(batch)
        state.stepped = False
        if "on_train_batch_start" in hooks:
            with logs.in_hook("on_train_batch_start"):
                callbacks.on_train_batch_start(self, model, batch, batch_idx)
                if model.on_train_batch_start(batch, batch_idx) == -1:
                    logs.batch = None
                    return False
        automatic = model.automatic_optimization
        if automatic:
            window_ends = (batch_idx + 1) % self.accumulate_grad_batches == 0 \
                or batch_idx + 1 == self.num_training_batches  # (schedule.accumulation_window_ends, inline)
            outputs = optimization.training_step(batch, batch_idx, window_ends)
        else:
            with logs.in_hook("training_step"), self._precision.forward_context():
                outputs = self.optimization.call_training_step(batch, batch_idx)
            check_step_output(outputs, manual=True)
        state.batches_done = batch_idx + 1
        state.total_batches += 1
        if "on_train_batch_end" in hooks:  # (the progress bar's: with defaults, every step)
            previous, logs.hook = logs.hook, "on_train_batch_end"  # `with logs.in_hook(...)`, inline
            try:
                callbacks.on_train_batch_end(self, model, outputs, batch, batch_idx)
                model.on_train_batch_end(outputs, batch, batch_idx)
            finally:
                logs.hook = previous
        logs.batch = None  # let the batch's memory go before the next one is collated
        if optimization.flush_due or not automatic:  # (manual optimization: due by batches)
            self._flush_step_logs()
        return True

    def _end_unsized_epoch(self, batch_idx: int) -> None:
        """An iterable without a length ran out: validate once, and step on a short last accumulation window."""
        if self.optimization.window_open():
            self.optimization.finish_window(batch_idx)
            self._flush_step_logs()
        if self.enable_validation and self._val_every == math.inf:
            self._run_validation()

    def _flush_step_logs(self) -> None:
        """Send the step values to the loggers if this batch stepped on a `log_every_n_steps` boundary.

        Called after on_train_batch_end, and before a checkpoint is written in it, so that what the
        loggers hold is never behind the newest checkpoint."""
        if self._step_logs_due():
            self._feed.send(self.log_collector.pop_step_values(), step=self._logged_steps() - 1)

    # --- when things happen (the rules are in schedule.py) ----------------------------------------

    def _validation_due(self) -> bool:
        return schedule.validation_due(self.fit_state, self._val_every, self.num_training_batches,
                                       self.check_val_every_n_epoch) and self.enable_validation

    def _stop_mid_epoch(self) -> bool:
        if self.max_time is not None and time.monotonic() - self._start_time >= self.max_time:
            self.should_stop = True
        return schedule.stop_mid_epoch(self.fit_state, self.max_steps, self.min_epochs, self.min_steps)

    def _fit_done(self) -> bool:
        state = self.fit_state
        if schedule.fit_done(state, self.max_epochs, self.max_steps, self.min_epochs, self.min_steps):
            return True
        state.should_stop = False  # a stop asked for before min_epochs / min_steps: keep training
        return self.num_training_batches == 0

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

    @launched
    def _evaluate_entry(self, stage: str, model: Module | None, dataloaders: Any, ckpt_path: Any,
                        verbose: bool, datamodule: DataModule | None) -> list[dict[str, float]]:
        if isinstance(dataloaders, DataModule):
            datamodule, dataloaders = dataloaders, None
        model = model or self.lightning_module
        check_sources(model, dataloaders, datamodule, stage, "dataloaders", Module, DataModule)
        results: list[dict[str, float]] = []

        def run() -> None:
            self._setup_stage(stage)
            self._connect_eval_data(stage, dataloaders)
            self._load_weights_for_eval(ckpt_path)
            self._feed.hyperparameters()  # every entry point logs them, as in Lightning
            results.extend(evaluation_loop(self, stage, self._eval_context()))
            if verbose and self.is_global_zero:
                print_results(stage, results)

        self._run(stage, model, datamodule, run)
        return results

    def _eval_context(self) -> EvalContext:
        return EvalContext(self._callbacks, self.log_collector, self._precision, self._data.to_device,
                           self._feed.send, self._eval_hooks)

    def _run_validation(self) -> None:
        if not self.optimization.window_open():  # the last step's gradients go, as in Lightning
            self.lightning_module.on_validation_model_zero_grad()
        evaluation_loop(self, "validate", self._eval_context())
        self.log_collector.use("train")

    @launched
    def predict(self, model: Module | None = None, dataloaders: Any = None, datamodule: DataModule | None = None,
                return_predictions: bool | None = None, ckpt_path: Any = None) -> list[Any] | None:
        """Run `predict_step` over the predict dataloaders; returns the outputs (a list per dataloader
        when there are several)."""
        if isinstance(dataloaders, DataModule):
            datamodule, dataloaders = dataloaders, None
        model = model or self.lightning_module
        check_sources(model, dataloaders, datamodule, "predict", "dataloaders", Module, DataModule)
        keep = True if return_predictions is None else return_predictions
        results: list[list[Any]] = []

        def run() -> None:
            self._setup_stage("predict")
            self._connect_eval_data("predict", dataloaders)
            self._load_weights_for_eval(ckpt_path)
            self._feed.hyperparameters()
            results.extend(predict_loop(self, keep, self._eval_context()))

        self._run("predict", model, datamodule, run)
        if not keep:
            return None
        return results[0] if len(results) == 1 else results

    # --- setup and teardown ----------------------------------------------------------------------

    def _run(self, stage: str, model: Module, datamodule: DataModule | None, body: Any) -> None:
        self.state = stage
        self.lightning_module = model
        model.trainer = self
        if datamodule is not None:
            self.datamodule = datamodule
            datamodule.trainer = self
        if self._callbacks_of is not model:  # once per model, so their state lives on from fit to test
            self.callbacks = merge_callbacks(self.callbacks, as_list(model.configure_callbacks()))
            self._callbacks_of = model
        ordered = ordered_callbacks(self.callbacks)
        self._callbacks = CallbackList(ordered)
        self._epoch_end_callbacks = tuple(CallbackList(part) for part in split_judges(ordered))
        self._interrupt = GracefulInterrupt()  # replaced by the fit loop's, which listens for signals
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.deterministic == "warn")
        if self.benchmark is not None:
            torch.backends.cudnn.benchmark = self.benchmark
        anomaly = torch.autograd.set_detect_anomaly(True) if self.detect_anomaly else None
        status = "success"
        self.log_collector.clear_metrics()  # each entry point starts with no metrics, as in Lightning
        try:
            body()
            if self.interrupted:
                status = "interrupted"
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            # another rank's failure, seen here as a failed collective: say which rank stopped answering
            seen = self.strategy.failure(err)
            self._callbacks.on_exception(self, model, seen or err)
            self.strategy.on_exception(seen or err)
            if seen is not None:
                raise seen from None
            raise
        finally:
            if anomaly is not None:
                torch.autograd.set_detect_anomaly(False)
            self._teardown(stage, status)


_END = object()
