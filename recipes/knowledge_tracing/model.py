"""Deep Knowledge Tracing: an LSTM reads a student's (exercise, correct) history and predicts the next answer."""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

import ember.lightning as pl


def process_batch(batch, n_exercises):
    """Inputs and targets of one batch of students.

    The input at step t is the one-hot code of (exercise t, answer t): ``exercise + n_exercises * correct``,
    so 2 * n_exercises columns as in the paper. The target at step t is the answer to exercise t + 1.
    """
    exercises, answers = batch
    inputs = F.one_hot(exercises[:, :-1] + n_exercises * answers[:, :-1], 2 * n_exercises).float()
    next_exercises = exercises[:, 1:]
    targets = answers[:, 1:]
    return inputs, next_exercises, targets


def compute_loss(preds, targets):
    return F.binary_cross_entropy_with_logits(preds, targets.float())


class DktLightning(pl.LightningModule):
    """The DKT model of Piech et al. (2015) with write-up 002's training step.

    Args:
        n_exercises: number of distinct exercises.
        hidden_dim: LSTM width (the paper uses 200).
        n_layers: stacked LSTM layers.
        dropout: dropout on the LSTM output, before the read-out.
        lr: Adam learning rate.
    """

    def __init__(self, n_exercises=50, hidden_dim=200, n_layers=1, dropout=0.2, lr=1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.lstm = nn.LSTM(2 * n_exercises, hidden_dim, num_layers=n_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, n_exercises)
        # One metric object per stage: each accumulates over its own epoch.
        self.train_acc, self.train_auroc = BinaryAccuracy(), BinaryAUROC()
        self.val_acc, self.val_auroc = BinaryAccuracy(), BinaryAUROC()
        self.test_acc, self.test_auroc = BinaryAccuracy(), BinaryAUROC()

    def forward(self, inputs, next_exercises):
        """Logit of a correct answer to ``next_exercises[:, t]`` given the history up to step t."""
        # The LSTM runs in float32 even under "bf16-mixed": on CPUs without native bf16 (AVX2 only, as
        # the 2-core machine these numbers come from) oneDNN has no bf16 LSTM kernel and raises
        # "could not create a primitive descriptor for the LSTM forward propagation primitive".
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            hidden, _ = self.lstm(inputs.float())
        logits = self.fc(self.dropout(hidden))  # (batch, steps, n_exercises): one logit per exercise
        return logits.gather(2, next_exercises.unsqueeze(2)).squeeze(2)

    def _step(self, batch):
        inputs, next_exercises, targets = process_batch(batch, self.hparams.n_exercises)
        preds = self.forward(inputs, next_exercises).float().flatten()
        targets = targets.flatten()
        return preds, targets, compute_loss(preds, targets)

    def training_step(self, train_batch, batch_idx):
        preds, targets, loss = self._step(train_batch)
        self.train_acc(preds, targets.int())
        self.train_auroc(preds, targets.int())
        self.log("train_loss", loss, on_epoch=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        self.log("train_auc", self.train_auroc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, val_batch, batch_idx):
        preds, targets, loss = self._step(val_batch)
        self.val_acc(preds, targets.int())
        self.val_auroc(preds, targets.int())
        self.log("val_loss", loss, sync_dist=True)  # the mean over every rank's batches under DDP
        self.log("val_acc", self.val_acc)
        self.log("val_auc", self.val_auroc, prog_bar=True)

    def test_step(self, test_batch, batch_idx):
        preds, targets, loss = self._step(test_batch)
        self.test_acc(preds, targets.int())
        self.test_auroc(preds, targets.int())
        self.log("test_loss", loss, sync_dist=True)
        self.log("test_acc", self.test_acc)
        self.log("test_auc", self.test_auroc)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
