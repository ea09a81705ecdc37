"""LightningCLI on ember: the same program and YAML config run under Lightning's CLI and ember's give the
same steps, logged keys and values; --print_config, config.yaml, run=False, trainer_defaults, seeds, class
paths for the model, optimizer and scheduler."""

from __future__ import annotations

import builtins
import csv
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember

pytest.importorskip("jsonargparse")
from ember.lightning.cli import LightningCLI, SaveConfigCallback  # noqa: E402


def classes(base_module, base_data):
    class Net(base_module):
        def __init__(self, hidden: int = 4):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            loss = F.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Data(base_data):
        def __init__(self, batch_size: int = 4, size: int = 32):
            super().__init__()
            self.batch_size, self.size = batch_size, size

        def _loader(self):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(self.size, 3, generator=generator)
            return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=self.batch_size)

        def train_dataloader(self):
            return self._loader()

        def val_dataloader(self):
            return self._loader()

    return Net, Data


EmberNet, EmberData = classes(ember.Module, ember.DataModule)

CONFIG = """
seed_everything: 7
trainer:
  max_epochs: 2
  limit_train_batches: 3
  limit_val_batches: 2
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: CSVLogger
    init_args:
      save_dir: {root}
  callbacks:
    - class_path: EarlyStopping
      init_args:
        monitor: val_loss
model:
  hidden: 8
data:
  batch_size: 8
optimizer:
  class_path: torch.optim.Adam
  init_args:
    lr: 0.01
"""


def metrics(log_dir) -> tuple[list[str], list[dict[str, str]]]:
    with open(Path(log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return sorted(rows[0]), rows


def test_the_same_config_runs_alike_under_lightnings_cli_and_embers(tmp_path):
    pytest.importorskip("lightning.pytorch")
    import lightning.pytorch as L
    from lightning.pytorch.cli import LightningCLI as TheirCLI

    results = []
    for name, cli_class, (net, data) in (("ember", LightningCLI, (EmberNet, EmberData)),
                                         ("lightning", TheirCLI, classes(L.LightningModule, L.LightningDataModule))):
        config = tmp_path / f"{name}.yaml"
        config.write_text(CONFIG.format(root=tmp_path / name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = cli_class(net, data, args=["fit", "--config", str(config)])
        trainer = cli.trainer
        keys, rows = metrics(trainer.log_dir)
        saved = yaml.safe_load((Path(trainer.log_dir) / "config.yaml").read_text())
        results.append((trainer.global_step, trainer.current_epoch, type(trainer.optimizers[0]).__name__,
                        trainer.optimizers[0].param_groups[0]["lr"], keys,
                        [round(float(r["val_loss"]), 5) for r in rows if r.get("val_loss")],
                        saved["model"], saved["data"], saved["seed_everything"], saved["optimizer"]))
    assert results[0] == results[1]
    assert results[0][:4] == (6, 2, "Adam", 0.01)


def run(tmp_path, *args, **kwargs):
    options = dict(args=["fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                         f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", *args])
    options.update(kwargs)
    return LightningCLI(options.pop("model_class", EmberNet), options.pop("datamodule_class", EmberData), **options)


def test_config_yaml_is_written_and_repeats_the_run(tmp_path):
    first = run(tmp_path / "a", "--model.hidden=3", "--seed_everything=true")
    saved = tmp_path / "a" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    assert isinstance(config["seed_everything"], int) and config["model"] == {"hidden": 3}
    again = LightningCLI(EmberNet, EmberData, args=["fit", "--config", str(saved),
                                                    f"--trainer.default_root_dir={tmp_path / 'b'}"])
    assert again.model.net[0].out_features == 3 and again.trainer.global_step == first.trainer.global_step == 2
    assert all(torch.equal(a, b) for a, b in zip(first.model.parameters(), again.model.parameters()))
    with pytest.raises(RuntimeError, match="SaveConfigCallback would overwrite .*config.yaml, which a previous run "
                                           "wrote"):
        run(tmp_path / "a")
    run(tmp_path / "a", save_config_kwargs={"overwrite": True})


def test_print_config_prints_the_yaml_and_runs_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        run(tmp_path, "--model.hidden=5", "--print_config")
    assert done.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == {"hidden": 5} and printed["trainer"]["max_epochs"] == 1
    assert not (tmp_path / "config.yaml").exists()


def test_run_false_builds_without_running(tmp_path):
    cli = LightningCLI(EmberNet, EmberData, run=False, args=["--trainer.max_epochs=1", "--data.batch_size=16",
                                                             f"--trainer.default_root_dir={tmp_path}",
                                                             "--trainer.logger=false"])
    assert cli.subcommand is None and cli.trainer.global_step == 0 and cli.datamodule.batch_size == 16
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2


def test_trainer_defaults_and_their_callbacks(tmp_path):
    class Marker(ember.Callback):
        pass

    cli = run(tmp_path, "--trainer.callbacks+=Timer",
              trainer_defaults={"max_steps": 1, "callbacks": [Marker()]})
    kinds = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "Marker" in kinds and "Timer" in kinds and "SaveConfigCallback" in kinds
    assert cli.trainer.max_steps == 1 and cli.trainer.global_step == 1


def test_model_class_path_optimizer_and_scheduler_from_the_command_line(tmp_path):
    cli = run(tmp_path, "--model.class_path=test_lightning_cli.EmberNet", "--model.init_args.hidden=6",
              "--optimizer=torch.optim.Adam", "--optimizer.lr=0.1",
              "--lr_scheduler=torch.optim.lr_scheduler.StepLR", "--lr_scheduler.step_size=1",
              "--lr_scheduler.gamma=0.5", model_class=None)
    assert isinstance(cli.model, EmberNet) and cli.model.net[0].out_features == 6
    [optimizer] = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "StepLR"


def test_validate_subcommand_with_its_own_arguments(tmp_path, capsys):
    cli = LightningCLI(EmberNet, EmberData, args=["validate", "--trainer.limit_val_batches=1", "--verbose=false",
                                                  f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"])
    assert cli.subcommand == "validate" and "val_loss" in cli.trainer.callback_metrics
    assert SaveConfigCallback in {type(c) for c in cli.trainer.callbacks}


def test_without_jsonargparse_the_error_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_jsonargparse(name, *args, **kwargs):
        if name.startswith("jsonargparse"):
            raise ImportError("No module named 'jsonargparse'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jsonargparse)
    with pytest.raises(ImportError, match=r"jsonargparse, which is not installed: pip install 'ember\[cli\]'"):
        LightningCLI(EmberNet, args=["fit"])


SCRIPT = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember.lightning as pl
from ember.lightning.cli import LightningCLI


class Net(pl.LightningModule):
    def __init__(self, hidden: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self.net(batch[0]), batch[1])


def data(batch_size: int = 4) -> DataLoader:
    x = torch.randn(32, 3)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=batch_size)


class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 4):
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self):
        return data(self.batch_size)


if __name__ == "__main__":
    cli = LightningCLI(Net, Data)
    print("global_step", cli.trainer.global_step)
'''


def test_a_script_runs_from_the_command_line_with_a_config(tmp_path):
    import subprocess
    import sys

    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "run.yaml").write_text("trainer:\n  max_epochs: 1\n  logger: false\n"
                                               "  enable_progress_bar: false\ndata:\n  batch_size: 16\n")
    done = subprocess.run([sys.executable, "train.py", "fit", "--config", "conf/run.yaml", "--model.hidden", "2",
                           "--optimizer", "SGD", "--optimizer.lr", "0.1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "global_step 2" in done.stdout  # 32 samples in batches of 16, one epoch
    # SaveConfigCallback wrote the whole config (with the command line's value) to the run's folder
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["data"] == {"batch_size": 16} and saved["model"] == {"hidden": 2}
    assert saved["trainer"]["max_epochs"] == 1
    assert saved["optimizer"]["class_path"] == "torch.optim.SGD" and saved["optimizer"]["init_args"]["lr"] == 0.1


class WiderNet(EmberNet):
    def __init__(self, hidden: int = 4, scale: float = 1.0):
        super().__init__(hidden)
        self.scale = scale


class SmallerData(EmberData):
    pass


def test_subclass_modes_take_a_subclass_of_the_given_classes_by_class_path(tmp_path):
    cli = LightningCLI(EmberNet, EmberData, subclass_mode_model=True, subclass_mode_data=True, run=False,
                       args=["--model=test_lightning_cli.WiderNet", "--model.scale=2.0",
                             "--data=test_lightning_cli.SmallerData", "--data.batch_size=8",
                             f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"])
    assert type(cli.model) is WiderNet and cli.model.scale == 2.0
    assert type(cli.datamodule) is SmallerData and cli.datamodule.batch_size == 8
    with pytest.raises(SystemExit):  # without subclass mode, only the class itself is taken
        LightningCLI(EmberNet, EmberData, run=False, args=["--model=test_lightning_cli.WiderNet"])
