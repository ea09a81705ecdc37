"""What self.log records: step values, weighted epoch means, sum/max/min, names, and misuse."""

from __future__ import annotations

import csv

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset


from conftest import Regressor, loader, quiet_trainer

# 10 samples in batches of 4, 4, 2; each sample carries the value to log
VALUES = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])


def value_loader() -> DataLoader:
    return DataLoader(TensorDataset(VALUES.unsqueeze(1), VALUES.unsqueeze(1)), batch_size=4)


class ValueLogger(Regressor):
    """Logs the mean of each batch's values under several reductions."""

    def __init__(self):
        super().__init__(features=1)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        mean = x.mean()
        self.log("mean", mean, on_step=True, on_epoch=True)
        self.log("total", x.sum(), on_step=False, on_epoch=True, reduce_fx="sum")
        self.log("largest", x.max(), on_epoch=True, reduce_fx="max")
        self.log("smallest", x.min(), on_epoch=True, reduce_fx=torch.min)
        self.log("unweighted", mean, on_epoch=True, batch_size=1)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log("val_mean", x.mean())


def test_epoch_aggregates_are_exact(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(ValueLogger(), value_loader(), value_loader())
    metrics = trainer.callback_metrics
    batch_means = [2.5, 6.5, 9.5]
    # the epoch mean is weighted by batch size: it equals the mean over the 10 samples
    assert metrics["mean_epoch"].item() == pytest.approx(5.5, abs=1e-6)
    assert metrics["mean"].item() == pytest.approx(5.5, abs=1e-6)
    assert metrics["mean_step"].item() == pytest.approx(batch_means[-1])
    assert metrics["total"].item() == 55.0
    assert metrics["largest_epoch"].item() == 10.0
    assert metrics["smallest_epoch"].item() == 1.0
    assert metrics["unweighted_epoch"].item() == pytest.approx(sum(batch_means) / 3, abs=1e-6)
    assert metrics["val_mean"].item() == pytest.approx(5.5, abs=1e-6)
    assert "val_mean_epoch" not in metrics  # only one of on_step/on_epoch: no suffix


def test_step_values_reach_the_csv_logger_every_n_steps(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=2, log_every_n_steps=2, enable_checkpointing=False)
    trainer.fit(ValueLogger(), value_loader())
    with open(trainer.logger.metrics_file_path) as f:
        rows = list(csv.DictReader(f))
    step_rows = [r for r in rows if r["mean_step"]]
    # 3 optimizer steps an epoch, 6 in all: logged after steps 2, 4 and 6 (step column = global_step - 1)
    assert [int(r["step"]) for r in step_rows] == [1, 3, 5]
    assert [float(r["mean_step"]) for r in step_rows] == [6.5, 2.5, 9.5]
    epoch_rows = [r for r in rows if r["mean_epoch"]]
    assert [(int(r["epoch"]), int(r["step"])) for r in epoch_rows] == [(0, 2), (1, 5)]
    assert float(epoch_rows[0]["total"]) == 55.0


def test_progress_bar_metrics_hold_prog_bar_values(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(Regressor(), loader())
    assert set(trainer.progress_bar_metrics) == {"train_loss"}
    assert isinstance(trainer.progress_bar_metrics["train_loss"], float)


class BadLog(Regressor):
    def __init__(self, where: str, value=None):
        super().__init__()
        self.where, self.value = where, value

    def training_step(self, batch, batch_idx):
        if self.where == "training_step":
            self.log("bad", self.value)
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        if self.where == "configure_optimizers":
            self.log("bad", 1.0)
        return super().configure_optimizers()


def test_logging_a_non_scalar_says_so(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"expects a scalar, got a tensor of shape \(3,\)"):
        trainer.fit(BadLog("training_step", torch.ones(3)), loader())


def test_logging_from_a_hook_that_may_not_log_says_where(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(RuntimeError, match="logging is not allowed.*allowed hooks:"):
        trainer.fit(BadLog("configure_optimizers"), loader())


def test_logging_a_string_says_what_is_expected(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(TypeError, match="expects a number, a scalar tensor or a torchmetrics Metric, got str"):
        trainer.fit(BadLog("training_step", "0.5"), loader())
