"""`ember plot` and ember.plot.plot_runs: curves of CSV logs, one subplot per group, one line per run."""

import csv
import sys

import pytest
import torch

import ember
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.cli import main
from ember.loggers import CSVLogger
from ember.plot import plot_runs

from logger_helpers import TinyRegressor, loader

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Tiny(TinyRegressor):
    """No saved hyperparameters; also logs `val_acc`; a learning rate halved every epoch."""

    def __init__(self, lr):
        super().__init__()
        self.lr = lr

    def validation_step(self, batch, batch_idx):
        x, y = batch
        error = (self.layer(x) - y).abs()
        self.log("val_loss", error.pow(2).mean())
        self.log("val_acc", (error < 0.5).float().mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


@pytest.fixture
def runs(tmp_path):
    """Two CSV runs, runs/version_0 and runs/version_1, with losses, a metric and a learning rate."""
    data = loader(batch_size=4)
    folders = []
    for lr in (0.1, 0.05):
        logger = CSVLogger(tmp_path, name="runs")
        trainer = ember.Trainer(max_epochs=3, logger=logger, callbacks=[LearningRateMonitor()], log_every_n_steps=1,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Tiny(lr), data, data)
        folders.append(logger.log_dir)
    return folders


def logged_keys(folder):
    with open(f"{folder}/metrics.csv") as f:
        return {key for row in csv.DictReader(f) for key, value in row.items() if value} - {"step", "epoch"}


def legends(figure):
    return {ax.get_title(): sorted(t.get_text() for t in ax.get_legend().get_texts())
            for ax in figure.axes if ax.get_visible()}


def test_every_logged_key_of_every_run_is_in_a_legend(runs, tmp_path):
    output = tmp_path / "runs.png"
    figure = plot_runs(runs, output)

    assert output.read_bytes()[:8] == PNG_SIGNATURE and output.stat().st_size > 20_000
    assert logged_keys(runs[0]) == logged_keys(runs[1]) == {"train_loss", "val_loss", "val_acc", "lr-SGD"}
    assert legends(figure) == {
        "loss": ["runs/version_0: train_loss", "runs/version_0: val_loss",
                 "runs/version_1: train_loss", "runs/version_1: val_loss"],
        "acc": ["runs/version_0: val_acc", "runs/version_1: val_acc"],
        "learning rate": ["runs/version_0: lr-SGD", "runs/version_1: lr-SGD"],
    }
    learning_rates = [line.get_ydata().tolist() for ax in figure.axes if ax.get_title() == "learning rate"
                      for line in ax.get_lines()]
    assert learning_rates == [[0.1, 0.05, 0.025], [0.05, 0.025, 0.0125]]


def test_cli_plots_every_run_below_a_folder(runs, tmp_path, capsys):
    output = tmp_path / "cli.png"
    assert main(["plot", str(tmp_path / "runs"), "-o", str(output)]) == 0
    assert output.read_bytes()[:8] == PNG_SIGNATURE
    assert capsys.readouterr().out == f"wrote {output}\n"


def test_cli_names_a_folder_without_logs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path), "-o", str(tmp_path / "out.png")])
    assert exit_info.value.code == 1
    assert f"ember plot: '{tmp_path}' holds no metrics.csv" in capsys.readouterr().err


def test_missing_matplotlib_names_the_extra(runs, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'ember\[plot\]'"):
        plot_runs(runs)


def fake_sweep(folder, trials):
    """A sweep folder as `ember fit -m` leaves it: multirun.yaml and one trial folder with run.json each,
    written by the command's own RunRecord."""
    from ember.experiment.runs import RunRecord

    folder.mkdir()
    (folder / "multirun.yaml").write_text("hydra: {}\n")
    for number, (params, metric) in enumerate(trials):
        record = RunRecord(folder / str(number))
        record.start("fit", "hash", params)
        if metric is None:
            record.fail(RuntimeError("breaks on purpose"))
        else:
            record.finish(metric, "val_loss")
    return folder


def test_cli_plots_a_sweeps_objective_against_each_swept_parameter(tmp_path, capsys):
    from ember.plot import plot_sweep

    sweep = fake_sweep(tmp_path / "sweep", [
        (["model.lr=0.001", "+model.act=relu", "trainer.max_epochs=2"], 0.5),
        (["model.lr=0.01", "+model.act=tanh", "trainer.max_epochs=2"], 0.25),
        (["model.lr=0.1", "+model.act=relu", "trainer.max_epochs=2"], None),  # failed: no point
        (["model.lr=1.0", "+model.act=tanh", "trainer.max_epochs=2"], 0.75),
    ])
    assert main(["plot", str(sweep)]) == 0
    assert (sweep / "sweep.png").stat().st_size > 0 and f"wrote {sweep}/sweep.png" in capsys.readouterr().out
    figure = plot_sweep(sweep)
    [lr, act] = [ax for ax in figure.axes if ax.get_visible()]  # max_epochs did not vary: no subplot
    assert (lr.get_xlabel(), act.get_xlabel()) == ("model.lr", "model.act")
    assert lr.get_xscale() == "log" and lr.get_ylabel() == "val_loss"
    assert lr.collections[0].get_offsets().tolist() == [[0.001, 0.5], [0.01, 0.25], [1.0, 0.75]]
    assert act.collections[0].get_offsets().tolist() == [[0, 0.5], [1, 0.25], [1, 0.75]]
    assert [t.get_text() for t in act.get_xticklabels()] == ["relu", "tanh"]
