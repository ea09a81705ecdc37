"""What every entry point sets up and tears down: the stage's hooks (prepare_data, setup, configure_model,
teardown) and the connection of its dataloaders (a part of `Trainer`, kept apart so trainer.py holds the
entry points and the loops)."""

from __future__ import annotations

from typing import Any

from ember import schedule
from ember.evaluation import EvalHooks


class StageSetup:
    """The set-up side of `Trainer`."""

    def _setup_stage(self, stage: str) -> None:
        model, datamodule = self.lightning_module, self.datamodule
        self.strategy.setup_environment()
        self.strategy.share_logger_identity(self.loggers)
        if datamodule is not None:
            if self.is_global_zero:
                datamodule.prepare_data()
            self.strategy.barrier("prepare_data")
            datamodule.setup(stage=stage)
        if self.is_global_zero:
            model.prepare_data()
        self._callbacks.setup(self, model, stage)
        model.setup(stage=stage)
        model.configure_model()  # after setup, before the model is converted, moved and given optimizers
        self._precision.convert_module(model)
        self.strategy.setup_module(model)
        self._data.prepare()

    def _teardown(self, stage: str, status: str) -> None:
        model = self.lightning_module
        self.training = False
        if self.datamodule is not None:
            self.datamodule.teardown(stage=stage)
        self._callbacks.teardown(self, model, stage)
        model.teardown(stage=stage)
        if self.is_global_zero:
            for logger in self.loggers:
                logger.finalize(status)
        self.state = None

    def _connect_train_data(self, loaders: Any) -> None:
        self._train_source = loaders
        self.train_dataloader, self.num_training_batches = self._data.train_loader(loaders, self.fit_state)
        self._val_every = schedule.validation_interval(self.val_check_interval, self.num_training_batches)

    def _connect_eval_data(self, stage: str, loaders: Any) -> None:
        if stage == "validate":
            self._val_source = loaders
        found, counts = self._data.eval_loaders(stage, loaders)
        self._eval_hooks[stage] = EvalHooks(stage, self._callbacks, self.lightning_module, len(found))
        self._eval_loaders[stage] = found
        if stage == "validate":
            self.num_val_batches = counts
        elif stage == "test":
            self.num_test_batches = counts
        else:
            self.num_predict_batches = counts

    def _maybe_reload_dataloaders(self) -> None:
        """`reload_dataloaders_every_n_epochs=n`: ask the model / datamodule for new loaders every n epochs."""
        n, epoch = self.reload_dataloaders_every_n_epochs, self.current_epoch
        if n and epoch > 0 and epoch % n == 0:
            self._connect_train_data(self._train_source)
            self._connect_eval_data("validate", self._val_source)
