"""The training job of the resume tests: run here uninterrupted, in a subprocess that is killed, and resumed.

    python tests/resume_job.py ROOT [--sleep SECONDS]

Prints `step N` after each optimizer step, so the test knows when to kill it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ember  # noqa: E402
from ember.callbacks import ModelCheckpoint  # noqa: E402

from conftest import Regressor, regression_data  # noqa: E402

EPOCHS = 3


class ResumeModel(Regressor):
    """Dropout (draws from the RNG), Adam (state), a step scheduler and epoch means: all must come back."""

    def __init__(self):
        super().__init__(features=4, dropout=0.3, hidden=16, lr=0.01)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.7)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Announce(ember.Callback):
    def __init__(self, sleep: float):
        self.sleep = sleep

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        print(f"step {trainer.global_step}", flush=True)
        time.sleep(self.sleep)


def train(root: str, ckpt_path: str | None = None, sleep: float = 0.0, every: int = 1) -> tuple[ResumeModel, ember.Trainer]:
    ember.seed_everything(1234, verbose=False)
    model = ResumeModel()
    data = DataLoader(regression_data(80, seed=3), batch_size=8, shuffle=True)  # 10 batches an epoch
    trainer = ember.Trainer(
        max_epochs=EPOCHS, default_root_dir=root, deterministic=True, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(every_n_train_steps=every, save_last=True), Announce(sleep)],
    )
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, trainer


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    train(args.root, "last" if args.resume else None, args.sleep)
