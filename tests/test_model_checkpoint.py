"""ModelCheckpoint: what each file holds, resume, missing keys, templates, names, state keys, messages."""

from __future__ import annotations

import copy
import datetime
import logging
import math
import os
import tempfile
from types import SimpleNamespace

import pytest
import torch

from ember.callbacks import EarlyStopping, ModelCheckpoint, ModelSummary
from ember.checkpoint import load_checkpoint, save_checkpoint

from conftest import Regressor, fit_scripted, loader, quiet_trainer

VALUES = [0.5, 0.3, 0.4, 0.2, 0.6]


class StubTrainer(SimpleNamespace):
    """What ModelCheckpoint reads of a trainer; `save_checkpoint` records the callback's state as written."""

    def __init__(self, callback, **kwargs):
        defaults = dict(fast_dev_run=False, sanity_checking=False, state="fit", current_epoch=0, global_step=0,
                        fit_state=SimpleNamespace(batches_done=8, epoch_finished=True, stepped=True),
                        callback_metrics={}, loggers=[], is_global_zero=True, world_size=1, check_val_every_n_epoch=1,
                        enable_validation=True, val_check_batch=8, num_training_batches=8, events=[],
                        fail_on=None)
        defaults.update(kwargs)
        super().__init__(**defaults)
        self.callback = callback

    def save_checkpoint(self, path, weights_only=False):
        if path == self.fail_on:
            raise OSError(28, "No space left on device")
        self.events.append(("write", os.path.basename(path), copy.deepcopy(self.callback.state_dict())))
        open(path, "wb").close()


def epoch_end(callback, trainer, epoch, value):
    """What the loop does at the end of an epoch that validated: the callback's epoch-end hooks."""
    trainer.current_epoch, trainer.global_step = epoch, 8 * (epoch + 1)
    trainer.callback_metrics = {"dev_loss": torch.tensor(value)}
    callback.on_validation_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)


def files(folder) -> list[str]:
    return sorted(os.listdir(folder))


# --- every file holds the state after its own save ---------------------------------------------------

def test_a_top_k_file_holds_the_ranking_with_itself_in_it_and_the_evicted_file_goes_after(tmp_path, monkeypatch):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="dev_loss", save_top_k=2, filename="{epoch}")
    trainer = StubTrainer(callback)
    remove = os.remove
    monkeypatch.setattr(os, "remove", lambda path: (trainer.events.append(("remove", os.path.basename(path))),
                                                    remove(path)))
    for epoch, value in enumerate([0.5, 0.3, 0.4]):
        epoch_end(callback, trainer, epoch, value)
    assert [e[:2] for e in trainer.events] == [("write", "epoch=0.ckpt"), ("write", "epoch=1.ckpt"),
                                               ("write", "epoch=2.ckpt"), ("remove", "epoch=0.ckpt")]
    held = trainer.events[2][2]
    assert sorted(map(os.path.basename, held["best_k_models"])) == ["epoch=1.ckpt", "epoch=2.ckpt"]
    assert os.path.basename(held["best_model_path"]) == "epoch=1.ckpt"
    assert os.path.basename(held["kth_best_model_path"]) == "epoch=2.ckpt"
    assert held["last_global_step_saved"] == 24
    assert files(tmp_path) == ["epoch=1.ckpt", "epoch=2.ckpt"]


def test_a_failed_write_puts_the_ranking_back_and_removes_nothing(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="dev_loss", save_top_k=2, filename="{epoch}", save_last=True)
    trainer = StubTrainer(callback)
    for epoch, value in enumerate([0.5, 0.3]):
        epoch_end(callback, trainer, epoch, value)
    before = copy.deepcopy(callback.state_dict())
    trainer.fail_on = str(tmp_path / "last.ckpt")  # the top-k file is written, then the last one fails
    with pytest.raises(OSError, match="No space left"):
        epoch_end(callback, trainer, 2, 0.4)
    after = callback.state_dict()
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before if k not in ("best_k_models", "current_score",
                                                                  "best_model_score"))
    assert after["best_k_models"].keys() == before["best_k_models"].keys()
    # epoch=0 (evicted by the failed save) is still there; epoch=2 (written by it) is gone again
    assert files(tmp_path) == ["epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"]


@pytest.mark.parametrize("options, resume_from, expected", [
    (dict(monitor="dev_loss", save_top_k=2, filename="{epoch}-{dev_loss:.2f}"), "epoch=2-dev_loss=0.40.ckpt",
     ["epoch=1-dev_loss=0.30.ckpt", "epoch=3-dev_loss=0.20.ckpt", "last.ckpt"]),
    (dict(), "epoch=2-step=24.ckpt", ["epoch=4-step=40.ckpt", "last.ckpt"]),  # monitor=None keeps the newest
])
def test_resuming_from_a_kept_file_ends_with_exactly_the_files_to_keep(tmp_path, options, resume_from, expected):
    folder = tmp_path / "ckpt"
    fit_scripted(tmp_path, VALUES[:3], [ModelCheckpoint(dirpath=folder, save_last=True, **options)])
    assert resume_from in files(folder)
    fit_scripted(tmp_path, VALUES, [ModelCheckpoint(dirpath=folder, save_last=True, **options)],
                 ckpt_path=folder / resume_from)
    assert files(folder) == expected


# --- temp files of a killed write ---------------------------------------------------------------------

def test_the_next_save_of_a_file_removes_the_temp_files_a_killed_write_of_it_left(tmp_path):
    target = tmp_path / "last.ckpt"
    fd, killed = tempfile.mkstemp(prefix=".last.ckpt.", suffix=".tmp", dir=tmp_path)  # as save_checkpoint names it
    os.write(fd, b"half a checkpoint")
    os.close(fd)
    others = [".epoch=1.ckpt.abcd1234.tmp",  # another file's write: not this save's business
              ".last.ckpt.tmp", ".last.ckpt.abc.tmp", "last.ckpt.abcd1234.tmp", "notes.tmp"]  # not mkstemp's names
    for name in others:
        (tmp_path / name).write_bytes(b"")
    save_checkpoint({"state_dict": {"w": torch.ones(1)}}, target)
    assert files(tmp_path) == sorted(others + ["last.ckpt"])
    assert not os.path.exists(killed)


# --- a monitored key, before and after the first validation ---------------------------------------------

def test_a_step_checkpoint_due_before_the_first_validation_warns_once_and_skips(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="dev_loss", every_n_train_steps=4,
                               filename="{step}-{dev_loss:.2f}")
    with pytest.warns(UserWarning) as warned:
        fit_scripted(tmp_path, [0.5, 0.3], [callback])  # saves due at steps 4, 8 (before validation), 12, 16
    messages = [str(w.message) for w in warned]
    assert len(messages) == 1
    assert messages[0].startswith("ModelCheckpoint(monitor='dev_loss'): 'dev_loss' not logged yet at epoch 0, "
                                  "step 4, before the first validation of this fit; skipping this top-k save. "
                                  "Logged keys: ['train_loss'].")
    assert files(tmp_path / "ckpt") == ["step=12-dev_loss=0.50.ckpt"]  # 16 (0.5 again) is not better


def test_a_monitored_key_still_missing_after_validation_raises_a_value_error(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_acc", every_n_train_steps=4)
    with pytest.warns(UserWarning, match="not logged yet at epoch 0, step 4"), \
            pytest.raises(ValueError, match=r"^ModelCheckpoint\(monitor='val_acc'\): 'val_acc' not found in the "
                                            r"logged values once validation has run\. Logged keys: \['dev_loss', "
                                            r"'train_loss'\]\. Log it with self\.log\('val_acc', value\)"):
        fit_scripted(tmp_path, [0.5, 0.3], [callback])


def test_without_validation_a_missing_key_raises_at_the_first_epoch_end(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train_los")
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[callback], logger=False)
    with pytest.raises(ValueError, match=r"'train_los' not found in the logged values once a training epoch has "
                                         r"ended \(this fit has no validation\)\. Logged keys: \['train_loss'\]"):
        trainer.fit(Regressor(), loader())


# --- the file name template ---------------------------------------------------------------------------

@pytest.mark.parametrize("filename, message", [
    ("{epoch:.2q}", r"ModelCheckpoint\(filename='\{epoch:.2q\}'\): the format spec '.2q' of \{epoch\} cannot "
                    r"format a number \(Unknown format code 'q' for object of type 'float'\)\. Use a spec such as"),
    ("{epoch", r"ModelCheckpoint\(filename='\{epoch'\) is not a valid template \(expected '\}' before end of "
               r"string\)\. Write each value as"),
    ("epoch}", r"is not a valid template \(Single '\}' encountered in format string\)"),
    ("{}-{epoch}", r"has an empty field '\{\}'"),
    ("{epoch!x}", r"'!x' in \{epoch!x\} is not a conversion"),
])
def test_a_bad_filename_template_is_rejected_when_the_callback_is_made(filename, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(filename=filename)


def test_good_templates_are_accepted_and_filled():
    callback = ModelCheckpoint(dirpath="ckpt", filename="{epoch:03d}-{val/loss:.2f}-{{x}}")
    assert callback.format_checkpoint_name({"epoch": torch.tensor(3), "val/loss": torch.tensor(0.126)}) == \
        os.path.join("ckpt", "epoch=003-val_loss=0.13-{x}.ckpt")


def test_an_unknown_filename_key_warns_before_validation_and_raises_after(tmp_path):
    early = ModelCheckpoint(dirpath=tmp_path / "a", every_n_train_steps=8, filename="{step}-{dev_loss:.1f}",
                            save_top_k=-1)
    with pytest.warns(UserWarning, match=r"^ModelCheckpoint\(filename='\{step\}-\{dev_loss:.1f\}'\): 'dev_loss' not "
                                         r"logged yet at epoch 0, step 8, before the first validation of this fit; "
                                         r"0 is written in its place\. Logged keys: \['train_loss'\]\."):
        fit_scripted(tmp_path / "a", [0.5, 0.3], [early])
    assert files(tmp_path / "a") == ["step=16-dev_loss=0.5.ckpt", "step=8-dev_loss=0.0.ckpt"]
    typo = ModelCheckpoint(dirpath=tmp_path / "b", filename="{epoch}-{dev_los:.2f}")
    with pytest.raises(ValueError, match=r"^ModelCheckpoint\(filename='\{epoch\}-\{dev_los:.2f\}'\): 'dev_los' not "
                                         r"found in the logged values once validation has run\. Logged keys: "
                                         r"\['dev_loss', 'train_loss'\]\. .*fix the name in the template"):
        fit_scripted(tmp_path / "b", [0.5, 0.3], [typo])
    assert not (tmp_path / "b").exists()


# --- the last file's name and the extension ------------------------------------------------------------

def test_a_subclass_names_the_last_file_and_the_extension(tmp_path):
    class EpochCheckpoint(ModelCheckpoint):
        CHECKPOINT_NAME_LAST = "{epoch}-last"
        FILE_EXTENSION = ".pt"

    callback = EpochCheckpoint(dirpath=tmp_path, monitor="dev_loss", save_top_k=2, save_last=True,
                               filename="best-{epoch}.pt")
    fit_scripted(tmp_path, [0.5, 0.3, 0.4], [callback])
    # as Lightning: the last name is a template, and each new last file replaces the one before
    assert files(tmp_path) == ["best-epoch=1.pt", "best-epoch=2.pt", "epoch=2-last.pt"]
    assert callback.last_model_path == str(tmp_path / "epoch=2-last.pt")
    assert load_checkpoint(callback.last_model_path)["epoch"] == 2


# --- state keys and state of another folder ------------------------------------------------------------

@pytest.mark.parametrize("callback, key", [  # the strings Lightning 2.6 builds for the same arguments
    (ModelCheckpoint(), "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, "
                        "'every_n_epochs': 1, 'train_time_interval': None}"),
    (ModelCheckpoint(every_n_train_steps=0),
     "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 0, "
     "'train_time_interval': None}"),
    (ModelCheckpoint(monitor="val_loss", every_n_train_steps=5),
     "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 5, 'every_n_epochs': 0, "
     "'train_time_interval': None}"),
    (ModelCheckpoint(train_time_interval=datetime.timedelta(seconds=3)),
     "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 0, "
     "'train_time_interval': datetime.timedelta(seconds=3)}"),
    (EarlyStopping(monitor="x"), "EarlyStopping{'monitor': 'x', 'mode': 'min'}"),
    (EarlyStopping(monitor="v", mode="max"), "EarlyStopping{'monitor': 'v', 'mode': 'max'}"),
])
def test_state_keys_are_lightnings(callback, key):
    assert callback.state_key == key


def test_state_of_another_folder_is_refused_with_a_warning(tmp_path):
    saved = ModelCheckpoint(dirpath=tmp_path / "a")
    saved.best_k_models = {str(tmp_path / "a" / "x.ckpt"): torch.tensor(1.0)}
    other = ModelCheckpoint(dirpath=tmp_path / "b")
    assert other.state_key == saved.state_key
    with pytest.warns(UserWarning, match=r"files were in '.*a'; this run saves to '.*b', so the top-k ranking "
                                         r"starts anew .*pass ModelCheckpoint\(dirpath="):
        other.load_state_dict(saved.state_dict())
    assert other.best_k_models == {}


# --- messages go through logging ------------------------------------------------------------------------

def test_verbose_messages_and_the_summary_are_info_records_of_the_ember_logger(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="ember")
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="dev_loss", verbose=True),
                 EarlyStopping(monitor="dev_loss", patience=1, verbose=True), ModelSummary()]
    fit_scripted(tmp_path, [0.5, 0.6], callbacks)
    messages = [r.getMessage() for r in caplog.records if r.name == "ember" and r.levelno == logging.INFO]
    assert messages[0].split("\n")[-1] == "0.000 MB (parameters)"  # the model summary
    saved = tmp_path / "ckpt" / "epoch=0-step=8.ckpt"
    assert messages[1] == f"Epoch 0, step 8: 'dev_loss' reached 0.50000; saved {saved}"
    assert messages[2] == "EarlyStopping: dev_loss did not improve in the last 1 checks; best 0.50000."
    assert capsys.readouterr().out == ""


def test_ember_messages_reach_stderr_when_the_application_configured_no_logging(monkeypatch, capsys):
    from ember._logging import log

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    log.info("shown once")
    logging.getLogger().addHandler(logging.NullHandler())  # an application's handler: it decides
    log.info("not shown by ember")
    assert capsys.readouterr().err == "shown once\n"


def test_nan_scores_rank_last(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="dev_loss", save_top_k=2, filename="{epoch}")
    trainer = StubTrainer(callback)
    for epoch, value in enumerate([math.nan, 0.4, 0.3]):
        epoch_end(callback, trainer, epoch, value)
    assert files(tmp_path) == ["epoch=1.ckpt", "epoch=2.ckpt"]
