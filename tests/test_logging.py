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


# --- Lightning's self.log arguments and what reaches the loggers, compared with Lightning ------------------


@pytest.mark.parametrize("reduce_fx, expected", [
    (sum, 55.0), (max, 10.0), (min, 1.0), ("SUM", 55.0), ("Max", 10.0), ("avg", 5.5), ("MEAN", 5.5),
    (torch.max, 10.0)])
def test_reduce_fx_takes_lightnings_spellings(tmp_path, reduce_fx, expected):
    class Reduced(ValueLogger):
        def training_step(self, batch, batch_idx):
            x, _ = batch
            self.log("value", x.sum() if expected == 55.0 else x.max() if expected == 10.0 else
                     x.min() if expected == 1.0 else x.mean(), on_step=False, on_epoch=True, reduce_fx=reduce_fx)
            return Regressor.training_step(self, batch, batch_idx)

    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(Reduced(), value_loader())
    assert trainer.callback_metrics["value"].item() == pytest.approx(expected)


def test_an_unknown_reduce_fx_lists_the_known_ones(tmp_path):
    class Median(ValueLogger):
        def training_step(self, batch, batch_idx):
            self.log("value", batch[0].mean(), reduce_fx="median")
            return Regressor.training_step(self, batch, batch_idx)

    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"reduce_fx='median'\): expected one of \('mean', 'sum', 'max', 'min'\)"):
        trainer.fit(Median(), value_loader())


def logging_module(base: type, add_dataloader_idx: bool = True) -> type:
    class Logged(base):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, prog_bar=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]), on_step=True,
                     prog_bar=True)

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            name = "test_loss" if add_dataloader_idx else f"test_loss_of_{dataloader_idx}"
            self.log(name, torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]), on_step=True,
                     on_epoch=True, prog_bar=True, add_dataloader_idx=add_dataloader_idx)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Logged


def csv_rows(trainer) -> list[tuple]:
    """The logger's rows as (step, epoch, {key: value}) with the empty cells left out."""
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        values = {k: round(float(v), 5) for k, v in row.items() if v and k not in ("step", "epoch")}
        out.append((int(row["step"]), row["epoch"] and int(row["epoch"]), values))
    return out


def fit_and_test_logging(tmp_path, add_dataloader_idx: bool = True):
    """Fit (validating twice an epoch) then test on two dataloaders, under ember and Lightning."""
    from lightning_twins import data, fit_both

    results = {}

    def run(trainer, model):
        trainer.fit(model, data(n=16, batch_size=4), data(n=16, batch_size=8))
        results[type(trainer).__module__] = dict(
            fit_bar=dict(trainer.progress_bar_metrics), fit_callback=sorted(trainer.callback_metrics),
            test=trainer.test(model, [data(n=16, batch_size=8), data(n=8, batch_size=8)], verbose=False))

    _, trainer, _, their_trainer = fit_both(lambda base: logging_module(base, add_dataloader_idx), tmp_path,
                                            fit=run, csv=True, max_epochs=2, val_check_interval=2,
                                            log_every_n_steps=1)
    return trainer, their_trainer, results


def test_step_values_of_validation_and_test_reach_the_loggers_as_in_lightning(tmp_path):
    trainer, their_trainer, results = fit_and_test_logging(tmp_path)
    ours, theirs = csv_rows(trainer), csv_rows(their_trainer)
    eval_rows = [r for r in ours if any("val_loss_step" in k or "test_loss_step" in k for k in r[2])]
    assert eval_rows == [r for r in theirs if any("val_loss_step" in k or "test_loss_step" in k for k in r[2])]
    # validation batches are counted across the fit (2 batches x 4 validations); test starts again at 0
    assert [(step, epoch) for step, epoch, _ in eval_rows] == [(s, "") for s in range(8)] + [(0, ""), (1, ""), (0, "")]
    assert set(eval_rows[-1][2]) == {"test_loss_step/dataloader_idx_1"}
    # the epoch rows of validation and training are Lightning's too
    assert [r for r in ours if "val_loss_epoch" in r[2]] == [r for r in theirs if "val_loss_epoch" in r[2]]
    assert [r for r in ours if "train_loss_epoch" in r[2]] == [r for r in theirs if "train_loss_epoch" in r[2]]


def test_several_test_dataloaders_get_lightnings_keys_and_bar(tmp_path):
    _, _, results = fit_and_test_logging(tmp_path)
    ours, theirs = results["ember.trainer"], results["lightning.pytorch.trainer.trainer"]
    assert [pytest.approx(d) for d in ours["test"]] == theirs["test"]
    assert [set(d) for d in ours["test"]] == [{"test_loss_epoch/dataloader_idx_0"},
                                              {"test_loss_epoch/dataloader_idx_1"}]
    assert ours["fit_bar"] == pytest.approx(theirs["fit_bar"])
    assert set(ours["fit_bar"]) == {"train_loss_step", "train_loss_epoch", "val_loss_step", "val_loss_epoch"}
    assert ours["fit_callback"] == theirs["fit_callback"]  # no validation step values among them


def test_add_dataloader_idx_false_keeps_the_names_given(tmp_path):
    _, _, results = fit_and_test_logging(tmp_path, add_dataloader_idx=False)
    ours, theirs = results["ember.trainer"], results["lightning.pytorch.trainer.trainer"]
    assert [set(d) for d in ours["test"]] == [{"test_loss_of_0_epoch"}, {"test_loss_of_1_epoch"}]
    assert [pytest.approx(d) for d in ours["test"]] == theirs["test"]


def test_a_name_that_already_holds_a_dataloader_index_is_refused():
    from ember.logs import LogCollector

    logs = LogCollector()
    logs.use("eval")
    logs.dataloader_idx = 1
    with logs.in_hook("validation_step"), pytest.raises(ValueError, match="add_dataloader_idx=False"):
        logs.log("loss/dataloader_idx_1", 1.0)


def test_rank_zero_only_values_are_not_reduced_across_processes():
    from ember.logs import LogCollector

    reduced = []

    class OneRankOfSeveral:  # what a distributed strategy gives the log collector, on one process
        def all_gather_object(self, obj):
            return [obj]

        def reduce(self, value, op):
            reduced.append(op)
            return value

    logs = LogCollector()
    logs.strategy = OneRankOfSeveral()
    logs.start_batch(torch.ones(2, 1))
    with logs.in_hook("training_step"):
        logs.log("everywhere", 1.0, sync_dist=True, on_epoch=True)
        logs.log("on_zero", 2.0, sync_dist=True, on_epoch=True, rank_zero_only=True)
    assert set(logs.pop_step_values()) == {"everywhere_step", "on_zero_step"}
    assert reduced == ["mean"]  # the step value of "everywhere" only
    logs.end_epoch()
    assert len(reduced) == 2  # and its epoch value (a weighted mean: totals and weights summed)
    assert logs.callback_metrics["on_zero_epoch"].item() == 2.0


def test_a_metric_the_module_does_not_hold_needs_metric_attribute(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")

    class Held(Regressor):
        def __init__(self, attribute=None):
            super().__init__()
            self.kept = [torchmetrics.MeanMetric()]  # a plain list: not a submodule
            self.attribute = attribute

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.kept[0].update(loss.detach())
            self.log("kept", self.kept[0], metric_attribute=self.attribute)
            return loss

    trainer = quiet_trainer(tmp_path, max_steps=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"the MeanMetric logged is not an attribute of Held.*metric_attribute="):
        trainer.fit(Held(), loader())
    with pytest.raises(ValueError, match=r"metric_attribute='net'\): Held.net is not the metric logged"):
        trainer.fit(Held("net"), loader())


@pytest.mark.parametrize("argument", [{"enable_graph": True}, {"sync_dist_group": "group"}])
def test_unsupported_log_arguments_say_so(tmp_path, argument):
    class Graph(Regressor):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log_dict({"again": loss}, **argument)
            return loss

    trainer = quiet_trainer(tmp_path, max_steps=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"self.log\('again', ..., (enable_graph=True|sync_dist_group=...)\) is not "
                                         "supported"):
        trainer.fit(Graph(), loader())


@pytest.mark.parametrize("reduce_fx", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["float32", "float32 (1,)", "float64", "mixed", "with a total"])
def test_epoch_totals_add_one_value_at_a_time_in_the_values_type(reduce_fx, kind):
    """The epoch total is what adding the values (times their weights, for a mean) one at a time as tensors
    gives, bit for bit (Lightning's arithmetic), whether ember folds them in one stack or one by one."""
    from ember.aggregate import EpochAggregate

    generator = torch.Generator().manual_seed(7)
    magnitudes = 10.0 ** torch.randint(-6, 7, (300,), generator=generator)  # order matters at this range
    values = (torch.randn(300, generator=generator) * magnitudes).tolist()
    weights = [float(w) for w in torch.randint(1, 65, (300,), generator=generator)]
    weights[::7] = [0.3] * len(weights[::7])  # a weight float32 does not hold exactly
    dtypes = {"float64": [torch.float64] * 300, "mixed": [torch.float32, torch.float64] * 150}.get(
        kind, [torch.float32] * 300)
    tensors = [torch.tensor([v] if kind == "float32 (1,)" else v, dtype=d) for v, d in zip(values, dtypes)]
    aggregate = EpochAggregate(reduce_fx)
    expected = None
    if kind == "with a total":
        aggregate.total = expected = torch.tensor(123.456, dtype=torch.float32)
    for value, weight in zip(tensors, weights):
        aggregate.add(value, weight)
        part = value.reshape(()) * weight if reduce_fx == "mean" else value.reshape(())
        expected = part if expected is None else expected + part
    total, _ = aggregate.partial()
    assert total.dtype == expected.dtype
    assert torch.equal(total, expected)
