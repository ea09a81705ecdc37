"""Ctrl-C and SIGTERM during fit: the batch finishes, a checkpoint is written, the fit returns with
`trainer.interrupted`, and resuming from it ends as the uninterrupted run; a second Ctrl-C aborts."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import ember
from ember.callbacks import ModelCheckpoint

from conftest import Regressor, regression_data

JOB = Path(__file__).resolve().parent / "interrupt_job.py"


class SignalAt(ember.Callback):
    """Send `signals` to this process in on_train_batch_end of global step `step`."""

    def __init__(self, step: int, *signals: int):
        self.step, self.signals = step, signals

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            for number in self.signals:
                os.kill(os.getpid(), number)


def fit(root, callbacks=(), ckpt_path=None, max_epochs=3):
    ember.seed_everything(3, verbose=False)
    model = Regressor(dropout=0.2, hidden=8)
    trainer = ember.Trainer(max_epochs=max_epochs, default_root_dir=root, enable_progress_bar=False,
                            enable_model_summary=False, log_every_n_steps=1,
                            callbacks=[ModelCheckpoint(save_last=True), *callbacks])
    trainer.fit(model, DataLoader(regression_data(64), batch_size=8, shuffle=True), ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_and_the_resume_is_exact(tmp_path, signum, caplog):
    whole, _ = fit(tmp_path / "whole")
    previous = signal.getsignal(signum)
    with caplog.at_level(logging.WARNING, logger="ember"):
        model, trainer = fit(tmp_path / "run", callbacks=[SignalAt(11, signum)])
    assert signal.getsignal(signum) is previous  # the fit put the handler back
    assert trainer.interrupted and trainer.global_step == 11  # the batch that was running finished
    last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert f"continue with trainer.fit(..., ckpt_path='{last}')" in caplog.text
    assert ember.checkpoint.load_checkpoint(last)["loops"]["global_step"] == 11
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    assert max(int(r["step"]) for r in rows) == 10  # the loggers were flushed up to the checkpoint

    resumed, resumed_trainer = fit(tmp_path / "run", ckpt_path="last")
    assert not resumed_trainer.interrupted and resumed_trainer.global_step == 24
    for (name, a), (_, b) in zip(resumed.state_dict().items(), whole.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    previous = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in a background job
    with pytest.raises(KeyboardInterrupt, match="twice"):
        fit(tmp_path, callbacks=[SignalAt(5, signal.SIGINT, signal.SIGINT)])
    assert signal.getsignal(signal.SIGINT) is previous  # the fit put its handler back
    checkpoints = Path(tmp_path, "ember_logs", "version_0", "checkpoints")
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # nothing saved on the way out


def test_without_checkpointing_the_interrupt_says_so(tmp_path, caplog):
    ember.seed_everything(3, verbose=False)
    trainer = ember.Trainer(max_epochs=3, default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, logger=False,
                            callbacks=[SignalAt(3, signal.SIGTERM)])
    with caplog.at_level(logging.WARNING, logger="ember"):
        trainer.fit(Regressor(), DataLoader(regression_data(64), batch_size=8))
    assert trainer.interrupted and trainer.global_step == 3
    assert "no checkpoint was written (checkpointing is off)" in caplog.text


def test_sigterm_from_outside_a_real_process(tmp_path):
    """A preempting scheduler: SIGTERM from another process while the job trains."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, str(JOB), str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in child.stdout:
            if line.startswith("step 5"):
                child.send_signal(signal.SIGTERM)
                break
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert "interrupted True" in out
    step = int(out.split("interrupted True at step ")[1].split()[0])
    saved = ember.checkpoint.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert saved["loops"]["global_step"] == step >= 5
