"""A user's package written into a temp dir for the experiment-layer tests: mypkg/ with a tiny model, a
datamodule and configs/{model,data,experiment}; run through the real `ember` command in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODEL = '''
import os
import torch
import torch.nn.functional as F
import ember


class Regressor(ember.Module):
    def __init__(self, lr: float = 0.05, fail_when_lr: float | None = None, die_at_step: int | None = None,
                 bad: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        if self.hparams.fail_when_lr is not None and self.hparams.lr == self.hparams.fail_when_lr:
            raise RuntimeError(f"trial with lr={self.hparams.lr} breaks on purpose")
        marker = os.environ.get("MYPKG_DIE_MARKER")
        if (self.hparams.die_at_step is not None and marker and not os.path.exists(marker)
                and self.trainer.global_step == self.hparams.die_at_step):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)  # the basic launcher runs trials in the driver: the driver dies mid-trial
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("val_loss", loss * 1e6 if self.hparams.bad else loss)  # bad: a trial a pruner should stop

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.mse_loss(self.net(x), y))

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''

DATA = '''
import torch
from torch.utils.data import DataLoader, TensorDataset
import ember


class Data(ember.DataModule):
    def __init__(self, n: int = 64, batch_size: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 4, generator=g)
        self.data = TensorDataset(x, x.sum(1, keepdim=True))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)
'''

CONFIGS = {
    "model/regressor.yaml": "_target_: mypkg.model.Regressor\nlr: 0.05\nbad: false\n",
    "data/tiny.yaml": "_target_: mypkg.data.Data\nn: 64\nbatch_size: 16\n",
    "experiment/x.yaml": textwrap.dedent("""\
        # @package _global_
        defaults:
          - override /model: regressor
          - override /data: tiny
          - override /trainer: cpu
        name: x
        trainer:
          max_epochs: 3
          enable_progress_bar: false
          enable_model_summary: false
        """),
}


def make_user_package(root: Path) -> Path:
    """Write mypkg/ under root; returns its config folder."""
    pkg = root / "mypkg"
    (pkg / "configs").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(MODEL)
    (pkg / "data.py").write_text(DATA)
    for name, text in CONFIGS.items():
        path = pkg / "configs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg / "configs"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def ember(args: list[str], cwd: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The `ember` command (as `python -m ember`) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "ember", *args], cwd=cwd, env=kwargs.pop("env", env()),
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def run_folders(root: Path, name: str = "x") -> list[Path]:
    return sorted(p.parent for p in (root / "runs" / name).glob("*/*/run.json"))


def read_run(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())
