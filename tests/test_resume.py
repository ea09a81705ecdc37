"""Exact resume: a run killed at any moment and resumed from its last checkpoint ends bit-identical."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ember
from ember.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from resume_job import EPOCHS, train

JOB = Path(__file__).resolve().parent / "resume_job.py"


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{name} differs"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(str(tmp_path_factory.mktemp("whole")), every=1000)


def test_resume_from_every_mid_epoch_checkpoint_is_exact(tmp_path, uninterrupted):
    whole, whole_trainer = uninterrupted
    root = tmp_path / "steps"
    checkpoint = ember.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=7, save_top_k=-1,
                                                 filename="{step}")
    ember.seed_everything(1234, verbose=False)
    from resume_job import ResumeModel, regression_data
    from torch.utils.data import DataLoader

    trainer = ember.Trainer(max_epochs=EPOCHS, default_root_dir=tmp_path, deterministic=True, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint])
    trainer.fit(ResumeModel(), DataLoader(regression_data(80, seed=3), batch_size=8, shuffle=True))
    saved = sorted(root.iterdir())
    assert [p.name for p in saved] == ["step=14.ckpt", "step=21.ckpt", "step=28.ckpt", "step=7.ckpt"]
    for path in saved:
        loops = load_checkpoint(path)["loops"]
        assert 0 < loops["batches_done"] < 10  # all in the middle of an epoch
        resumed, resumed_trainer = train(str(tmp_path / path.stem), ckpt_path=str(path), every=1000)
        assert_same_weights(resumed, whole)
        assert resumed_trainer.global_step == whole_trainer.global_step == 30
        # the epoch mean of the last epoch includes the steps before the checkpoint
        assert torch.equal(resumed_trainer.callback_metrics["train_loss_epoch"],
                           whole_trainer.callback_metrics["train_loss_epoch"])


def test_sigkill_mid_epoch_then_resume_from_last_is_exact(tmp_path, uninterrupted):
    whole, _ = uninterrupted
    root = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(JOB.parents[1]))
    child = subprocess.Popen([sys.executable, str(JOB), str(root), "--sleep", "0.05"], stdout=subprocess.PIPE,
                             text=True, env=env)
    for line in child.stdout:
        if line.strip() == "step 14":  # epoch 1, batch 4: the middle of an epoch
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    last = root / "ember_logs" / "version_0" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)
    killed_at = saved["global_step"]
    assert 13 <= killed_at < 30 and 0 < saved["loops"]["batches_done"] < 10  # mid-epoch

    resumed, trainer = train(str(root), ckpt_path="last", every=1)
    assert_same_weights(resumed, whole)
    # the resumed run continued the same logger folder, without duplicated steps
    assert trainer.log_dir == str(root / "ember_logs" / "version_0")
    with open(Path(trainer.log_dir) / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["train_loss_step"]]
    assert steps == sorted(set(steps))
    # every step logged exactly once: the logs were flushed before each checkpoint was written
    assert steps == list(range(30))


def test_an_interrupted_checkpoint_write_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    save_checkpoint({"state_dict": {}}, tmp_path / "a.ckpt")
    torch.save({}, tmp_path / "b.pt")
    assert (tmp_path / "a.ckpt").stat().st_mode == (tmp_path / "b.pt").stat().st_mode


def test_a_truncated_checkpoint_is_reported_not_loaded(tmp_path):
    path = tmp_path / "broken.ckpt"
    save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated, corrupt.*load an earlier checkpoint"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"not a training checkpoint.*keys \['w'\]"):
        load_checkpoint(path)


def test_checkpoints_load_with_weights_only(tmp_path, uninterrupted):
    _, trainer = uninterrupted
    path = tmp_path / "full.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) >= {"state_dict", "hyper_parameters", "loops", "optimizers", "lr_schedulers",
                               "callbacks", "logs", "loggers", "rng", "epoch", "global_step"}
    assert checkpoint["hyper_parameters"] == {"features": 4, "lr": 0.01, "dropout": 0.3, "hidden": 16}


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        for _ in range(8):
            x = torch.randn(8, 4, generator=generator)
            yield x, x.sum(dim=1, keepdim=True)


def test_resuming_an_iterable_dataset_mid_epoch_says_it_cannot_be_exact(tmp_path):
    from conftest import Regressor, quiet_trainer

    checkpoint = ember.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, filename="{step}")
    quiet_trainer(tmp_path, max_epochs=1, callbacks=[checkpoint], logger=False).fit(Regressor(), Stream())
    resumed = quiet_trainer(tmp_path / "again", max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="cannot be exact with this training data.*loading and dropping"):
        resumed.fit(Regressor(), Stream(), ckpt_path=tmp_path / "step=6.ckpt")
    assert resumed.global_step == 8


def test_torchmetrics_state_survives_a_mid_epoch_resume(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")
    from torch.utils.data import DataLoader, TensorDataset

    from conftest import Regressor, quiet_trainer

    class WithAccuracy(Regressor):
        def __init__(self):
            super().__init__(lr=0.0)
            self.accuracy = torchmetrics.classification.BinaryAccuracy()

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.accuracy(x[:, 0], y[:, 0])  # predictions fixed by the data: the epoch value is known
            self.log("train_acc", self.accuracy, on_epoch=True)
            return super().training_step((x, y), batch_idx)

    x = torch.tensor([[0.9], [0.1], [0.8], [0.2], [0.7], [0.6], [0.4], [0.3], [0.9], [0.1]]).repeat(1, 4)
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0], [0.0], [0.0], [1.0]])
    data = DataLoader(TensorDataset(x, y), batch_size=4)  # batches of 4, 4, 2

    whole = quiet_trainer(tmp_path / "whole", max_epochs=1, logger=False, enable_checkpointing=False)
    whole.fit(WithAccuracy(), data)
    assert whole.callback_metrics["train_acc_epoch"].item() == pytest.approx(0.6)

    checkpoint = ember.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1,
                                                 save_top_k=-1, filename="{step}")
    quiet_trainer(tmp_path, max_epochs=1, logger=False, callbacks=[checkpoint]).fit(WithAccuracy(), data)
    resumed = quiet_trainer(tmp_path / "resumed", max_epochs=1, logger=False, enable_checkpointing=False)
    resumed.fit(WithAccuracy(), data, ckpt_path=tmp_path / "ckpt" / "step=2.ckpt")
    assert resumed.callback_metrics["train_acc_epoch"].item() == pytest.approx(0.6)


def test_a_checkpoint_saved_after_fit_resumes_at_the_next_epoch(tmp_path):
    from conftest import Regressor, loader, quiet_trainer

    first = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    first.fit(Regressor(), loader())
    first.save_checkpoint(tmp_path / "after.ckpt")
    second = quiet_trainer(tmp_path, max_epochs=2, logger=False, enable_checkpointing=False)
    second.fit(Regressor(), loader(), ckpt_path=tmp_path / "after.ckpt")
    assert (second.current_epoch, second.global_step) == (2, 16)


def test_resume_from_the_last_batch_runs_the_validation_that_followed_it(tmp_path):
    from conftest import Regressor, loader, quiet_trainer

    class CountValidations(ember.Callback):
        def __init__(self):
            self.epochs = []

        def on_validation_end(self, trainer, pl_module):
            self.epochs.append(trainer.current_epoch)

    checkpoint = ember.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=8, save_top_k=-1,
                                                 filename="{step}")
    whole = CountValidations()
    quiet_trainer(tmp_path, max_epochs=2, logger=False, callbacks=[checkpoint, whole]).fit(
        Regressor(), loader(), loader())
    assert whole.epochs == [0, 1]
    resumed = CountValidations()
    trainer = quiet_trainer(tmp_path / "r", max_epochs=2, logger=False, enable_checkpointing=False,
                            callbacks=[resumed])
    trainer.fit(Regressor(), loader(), loader(), ckpt_path=tmp_path / "step=8.ckpt")  # after batch 8 of 8
    assert resumed.epochs == [0, 1]
