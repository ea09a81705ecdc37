"""The loggers together: several at once (with LearningRateMonitor), and ember without their packages."""

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ember
import ember.loggers
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.loggers import CSVLogger

from logger_helpers import TinyRegressor, loader

REPO = Path(__file__).resolve().parents[1]


class Tiny(TinyRegressor):
    """Only `lr` as a hyperparameter; a learning rate halved every 3 steps."""

    def __init__(self, lr=0.1):
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory):
    """An empty SQLite store made by MLflow once: creating one runs its schema migrations (~10 s here)."""
    mlflow = pytest.importorskip("mlflow")
    path = tmp_path_factory.getbasetemp() / "mlflow-empty-store" / "mlflow.db"
    if not path.exists():
        path.parent.mkdir()
        mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def wandb_rows(save_dir):
    """The history rows of the one offline run under save_dir, read with wandb's own reader."""
    import wandb

    [run_file] = (save_dir / "wandb").glob("offline-run-*/run-*.wandb")
    command = [wandb.util.get_core_path(), "leet", "inspect", "--no-observability", "--json",
               "--run-file", str(run_file), str(save_dir / "wandb")]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [r["history"]["item"] for r in map(json.loads, out.splitlines()) if r["type"] == "history"]


def test_csv_tensorboard_mlflow_and_wandb_at_once_with_learning_rates(tmp_path, empty_mlflow_store, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ember.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / variable.lower()))
    (tmp_path / "mlruns").mkdir()
    shutil.copy(empty_mlflow_store, tmp_path / "mlruns" / "mlflow.db")

    loggers = [CSVLogger(tmp_path), TensorBoardLogger(tmp_path), MLFlowLogger(save_dir=tmp_path),
               WandbLogger(save_dir=tmp_path)]
    data = loader(batch_size=4)
    trainer = ember.Trainer(max_epochs=2, logger=loggers, callbacks=[LearningRateMonitor(logging_interval="step")],
                            log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)
    trainer.fit(Tiny(), data, data)

    with open(loggers[0].metrics_file_path) as f:
        rows = list(csv.DictReader(f))

    def logged(key):
        return [(int(r["step"]), float(r[key])) for r in rows if r[key]]

    assert logged("lr-SGD") == [(0, 0.1), (1, 0.1), (2, 0.1), (3, 0.05), (4, 0.05), (5, 0.05), (6, 0.025),
                                (7, 0.025)]
    events = EventAccumulator(loggers[1].log_dir)
    events.Reload()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    history = wandb_rows(tmp_path)
    for key in ("lr-SGD", "train_loss", "val_loss"):
        expected = logged(key)
        assert [(e.step, e.value) for e in events.Scalars(key)] == [(s, float(torch.tensor(v))) for s, v in expected]
        assert [(m.step, m.value) for m in client.get_metric_history(loggers[2].run_id, key)] == expected
        assert [(h["trainer/global_step"], h[key]) for h in history if key in h] == expected


@pytest.mark.parametrize("logger, modules, extra", [
    ("TensorBoardLogger", ["tensorboard", "torch.utils.tensorboard"], "tensorboard"),
    ("MLFlowLogger", ["mlflow"], "mlflow"),
    ("WandbLogger", ["wandb"], "wandb"),
])
def test_a_missing_package_is_named_with_its_extra(logger, modules, extra, tmp_path, monkeypatch):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    with pytest.raises(ImportError, match=rf"{logger} needs {extra}: pip install 'ember\[{extra}\]'"):
        getattr(ember.loggers, logger)(save_dir=tmp_path)


def test_ember_imports_and_trains_without_the_optional_packages(tmp_path):
    """In a fresh interpreter where they cannot be imported: `import ember` (and its logger, plot and CLI
    modules) never reaches for them, and a fit with the default CSV logger runs."""
    code = textwrap.dedent("""
        import sys

        BLOCKED = ("tensorboard", "torch.utils.tensorboard", "mlflow", "wandb", "matplotlib", "torchmetrics")

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name in BLOCKED or name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"blocked: {name}")

        sys.meta_path.insert(0, Block())
        import torch
        import ember, ember.loggers, ember.lightning, ember.plot, ember.cli
        from torch.utils.data import DataLoader, TensorDataset

        class Tiny(ember.Module):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)
            def training_step(self, batch, batch_idx):
                loss = self.layer(batch[0]).pow(2).mean()
                self.log("train_loss", loss)
                return loss
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        trainer = ember.Trainer(max_steps=3, log_every_n_steps=1, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=sys.argv[1])
        trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2))
        print(open(trainer.logger.metrics_file_path).read().splitlines()[0])
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "step,train_loss,epoch"
