"""Tiny models and data shared by the tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember


def regression_data(n: int = 64, features: int = 4, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = x @ torch.arange(1.0, features + 1) + 0.1 * torch.randn(n, generator=generator)
    return TensorDataset(x, y.unsqueeze(1))


class Regressor(ember.Module):
    """A linear model (optionally with dropout, so resume tests exercise the RNG) trained with SGD."""

    def __init__(self, features: int = 4, lr: float = 0.05, dropout: float = 0.0, hidden: int = 0):
        super().__init__()
        self.save_hyperparameters()
        if hidden:
            self.net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("test_loss", F.mse_loss(self(x), y))

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Scripted(Regressor):
    """Logs a given value per validation under `name`: `values[current_epoch]`."""

    def __init__(self, values, name="dev_loss"):
        super().__init__()
        self.values, self.name = list(values), name

    def validation_step(self, batch, batch_idx):
        self.log(self.name, torch.tensor(self.values[self.current_epoch]))


def loader(dataset=None, batch_size: int = 8, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset if dataset is not None else regression_data(), batch_size=batch_size, shuffle=shuffle)


def quiet_trainer(tmp_path, **kwargs) -> ember.Trainer:
    """A Trainer with no progress bar or summary, writing under tmp_path."""
    options = dict(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0)
    options.update(kwargs)
    return ember.Trainer(**options)


def fit_scripted(tmp_path, values, callbacks, name="dev_loss", ckpt_path=None, **kwargs) -> ember.Trainer:
    """Fit `Scripted(values)` for len(values) epochs (8 batches each), validating one batch per epoch."""
    options = dict(max_epochs=len(values), callbacks=callbacks, logger=False, limit_val_batches=1)
    options.update(kwargs)
    trainer = quiet_trainer(tmp_path, **options)
    trainer.fit(Scripted(values, name), loader(), loader(), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(autouse=True)
def _no_global_seed(monkeypatch):
    monkeypatch.delenv("EMBER_GLOBAL_SEED", raising=False)
