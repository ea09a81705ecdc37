"""torchmetrics through self.log / self.log_dict: the step value is the metric's value on the batch, the
epoch value is compute() over the whole epoch (then reset), not a mean of batch values."""

import csv

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.loggers import CSVLogger

torchmetrics = pytest.importorskip("torchmetrics")
from torchmetrics import MetricCollection  # noqa: E402
from torchmetrics.classification import BinaryAccuracy, BinaryPrecision  # noqa: E402

# 10 samples in batches of 4, 4, 2. Per batch, accuracy is 4/4, 2/4, 0/2 and precision 4/4, 1/2, 0/1.
# Over the epoch: accuracy 6/10 (the mean of batch accuracies is 0.5) and precision 5/7 (the mean of
# batch precisions weighted by batch size is 0.6, unweighted 0.5).
PREDS = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 0, 1])
TARGETS = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 1, 0])


def ratio(a, b):
    return (torch.tensor(float(a)) / torch.tensor(float(b))).item()  # as torchmetrics computes it, in float32


def loader(n=10):
    return DataLoader(TensorDataset(PREDS[:n], TARGETS[:n]), batch_size=4)


class Classifier(ember.Module):
    """Its 'predictions' are the batch's first tensor; the loss only gives the optimizer a gradient."""

    def __init__(self, collection=False):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.collection = collection
        if collection:
            metrics = MetricCollection([BinaryAccuracy(), BinaryPrecision()])
            self.train_metrics = metrics.clone(prefix="train_")
            self.val_metrics = metrics.clone(prefix="val_")
        else:
            self.train_acc, self.val_acc, self.val_precision = BinaryAccuracy(), BinaryAccuracy(), BinaryPrecision()

    def training_step(self, batch, batch_idx):
        preds, target = batch
        if self.collection:
            self.train_metrics(preds, target)
            self.log_dict(self.train_metrics, on_step=True, on_epoch=True)
        else:
            self.train_acc(preds, target)
            self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
        return self.weight * 0.0

    def validation_step(self, batch, batch_idx):
        preds, target = batch
        if self.collection:
            self.val_metrics.update(preds, target)
            self.log_dict(self.val_metrics)
        else:
            self.val_acc(preds, target)
            self.val_precision(preds, target)
            self.log("val_acc", self.val_acc)
            self.log("val_precision", self.val_precision)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def run(tmp_path, model, **kwargs):
    logger = CSVLogger(tmp_path)
    trainer = ember.Trainer(logger=logger, log_every_n_steps=1, num_sanity_val_steps=0, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, **kwargs)
    trainer.fit(model, loader(), loader())
    logger.save()
    with open(logger.metrics_file_path) as f:
        rows = list(csv.DictReader(f))
    return trainer, rows


def column(rows, key):
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def test_step_values_are_batch_values_and_epoch_values_are_computed_over_the_epoch(tmp_path):
    trainer, rows = run(tmp_path, Classifier(), max_epochs=2)
    accuracy, precision = ratio(6, 10), ratio(5, 7)
    assert column(rows, "train_acc_step") == [(0, 1.0), (1, 0.5), (2, 0.0), (3, 1.0), (4, 0.5), (5, 0.0)]
    assert column(rows, "train_acc_epoch") == [(2, accuracy), (5, accuracy)]
    assert column(rows, "val_acc") == [(2, accuracy), (5, accuracy)]
    assert column(rows, "val_precision") == [(2, precision), (5, precision)]
    assert trainer.callback_metrics["val_precision"].item() == precision


def test_epoch_end_resets_the_metric(tmp_path):
    model = Classifier()
    trainer, _ = run(tmp_path, model, max_epochs=1)
    # the first batch alone: precision 4/4; without a reset the state of the fit would give 9/11
    [result] = trainer.validate(model, loader(4), verbose=False)
    assert result["val_precision"] == 1.0


def test_metric_collection_through_log_dict(tmp_path):
    trainer, rows = run(tmp_path, Classifier(collection=True), max_epochs=1)
    assert column(rows, "train_BinaryAccuracy_step") == [(0, 1.0), (1, 0.5), (2, 0.0)]
    assert column(rows, "train_BinaryPrecision_step") == [(0, 1.0), (1, 0.5), (2, 0.0)]
    assert column(rows, "train_BinaryAccuracy_epoch") == [(2, ratio(6, 10))]
    assert column(rows, "train_BinaryPrecision_epoch") == [(2, ratio(5, 7))]
    assert column(rows, "val_BinaryAccuracy") == [(2, ratio(6, 10))]
    assert column(rows, "val_BinaryPrecision") == [(2, ratio(5, 7))]
