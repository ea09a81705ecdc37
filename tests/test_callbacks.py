"""ModelCheckpoint (top-k, last, templates, state), EarlyStopping and CallbackList semantics."""

from __future__ import annotations

import inspect
import math
import os
from types import SimpleNamespace

import pytest
import torch

from ember.callbacks import Callback, CallbackList, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from ember.callbacks.base import HOOKS
from ember.checkpoint import load_checkpoint

from conftest import Regressor, fit_scripted, loader, quiet_trainer


def test_top_k_keeps_the_best_files_and_last(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="dev_loss", save_top_k=2,
                                 filename="{epoch}-{dev_loss:.2f}", save_last=True)
    fit_scripted(tmp_path, [0.5, 0.3, 0.4, 0.2, 0.6], [checkpoint])
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["epoch=1-dev_loss=0.30.ckpt", "epoch=3-dev_loss=0.20.ckpt",
                                                     "last.ckpt"]
    assert checkpoint.best_model_path == str(tmp_path / "ckpt" / "epoch=3-dev_loss=0.20.ckpt")
    assert checkpoint.best_model_score.item() == pytest.approx(0.2)
    assert checkpoint.kth_best_model_path.endswith("epoch=1-dev_loss=0.30.ckpt")
    assert checkpoint.last_model_path == str(tmp_path / "ckpt" / "last.ckpt")
    assert sorted(round(v.item(), 2) for v in checkpoint.best_k_models.values()) == [0.2, 0.3]
    assert load_checkpoint(checkpoint.last_model_path)["epoch"] == 4


def test_mode_max_and_metric_names_with_slashes(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="valid/acc", mode="max",
                                 filename="best-checkpoint.ckpt")
    fit_scripted(tmp_path, [0.1, 0.9, 0.5], [checkpoint], name="valid/acc")
    assert os.listdir(tmp_path / "ckpt") == ["best-checkpoint.ckpt"]
    template = ModelCheckpoint(dirpath=tmp_path / "t", monitor="valid/acc", filename="{epoch}-{valid/acc:.3f}")
    fit_scripted(tmp_path / "2", [0.25], [template], name="valid/acc")
    assert os.listdir(tmp_path / "t") == ["epoch=0-valid_acc=0.250.ckpt"]


def test_default_checkpoint_goes_to_the_logger_folder(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(Regressor(), loader())
    folder = tmp_path / "ember_logs" / "version_0" / "checkpoints"
    assert os.listdir(folder) == ["epoch=1-step=16.ckpt"]
    assert trainer.checkpoint_callback.best_model_path == str(folder / "epoch=1-step=16.ckpt")


def test_every_n_train_steps(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_top_k=-1, filename="{step}")
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[checkpoint], logger=False)
    trainer.fit(Regressor(), loader())  # 16 steps
    assert sorted(os.listdir(tmp_path)) == ["step=10.ckpt", "step=15.ckpt", "step=5.ckpt"]


def test_monitoring_a_key_never_logged_lists_the_logged_keys(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_acc")
    with pytest.raises(ValueError, match=r"monitor='val_acc'.*Logged keys: \['dev_loss', 'train_loss'\]"):
        fit_scripted(tmp_path, [0.5], [checkpoint])
    assert not (tmp_path / "ckpt").exists() or os.listdir(tmp_path / "ckpt") == []


def test_checkpoint_state_key_and_state_round_trip(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="dev_loss", save_top_k=2, save_last=True)
    fit_scripted(tmp_path, [0.5, 0.3], [checkpoint])
    saved = load_checkpoint(checkpoint.last_model_path)
    assert saved["callbacks"][checkpoint.state_key]["best_model_path"] == checkpoint.best_model_path
    fresh = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="dev_loss", save_top_k=2, save_last=True)
    fresh.load_state_dict(saved["callbacks"][checkpoint.state_key])
    assert fresh.best_k_models.keys() == checkpoint.best_k_models.keys()


@pytest.mark.parametrize(
    "values, kwargs, stopped_after",
    [
        ([5, 4, 4, 4, 4, 4, 4], dict(patience=2), 4),                        # no improvement for 2 checks
        ([5, 4, 3.95, 3.9, 3.85, 3.8, 3.7], dict(patience=2, min_delta=0.1), 4),  # improvements below min_delta
        ([1, 2, 3, 3, 3, 3], dict(patience=1, mode="max"), 4),
        ([5, 4, 0.5, 0.4], dict(patience=10, stopping_threshold=1.0), 3),
        ([5, 4, 20, 1], dict(patience=10, divergence_threshold=10.0), 3),
        ([5, 4, math.nan, 1], dict(patience=10), 3),
        ([5, 4, 3, 2, 1], dict(patience=1), 5),                                # never stops
    ],
)
def test_early_stopping(tmp_path, values, kwargs, stopped_after):
    stopper = EarlyStopping(monitor="dev_loss", **kwargs)
    trainer = fit_scripted(tmp_path, values, [stopper])
    assert trainer.current_epoch == stopped_after
    assert trainer.should_stop == (stopped_after < len(values))


def test_early_stopping_respects_min_epochs(tmp_path):
    stopper = EarlyStopping(monitor="dev_loss", patience=1)
    trainer = fit_scripted(tmp_path, [5, 5, 5, 5, 5, 5], [stopper], min_epochs=4)
    assert trainer.current_epoch == 4


def test_early_stopping_strict_names_the_logged_keys(tmp_path):
    with pytest.raises(ValueError, match=r"EarlyStopping\(monitor='val_loss'\).*\['dev_loss', 'train_loss'\]"):
        fit_scripted(tmp_path, [1.0], [EarlyStopping(monitor="val_loss")])
    trainer = fit_scripted(tmp_path, [1.0, 1.0], [EarlyStopping(monitor="val_loss", strict=False)])
    assert trainer.current_epoch == 2


class Scheduled(Regressor):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_learning_rate_monitor_logs_each_step(tmp_path):
    monitor = LearningRateMonitor(logging_interval="step")
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[monitor], log_every_n_steps=1,
                            enable_checkpointing=False)
    trainer.fit(Scheduled(), loader())
    assert monitor.lrs == {"lr-SGD": [1.0, 0.5, 0.25]}


def test_every_callback_hook_has_a_method_of_its_own_in_callback_list():
    hooks = {name for name, value in vars(Callback).items()
             if callable(value) and not name.startswith("_") and name not in ("state_dict", "load_state_dict")}
    assert hooks == set(HOOKS)
    # written out in the class (not bound in __init__), so reading tools land on the loop
    assert [name for name in HOOKS if name not in vars(CallbackList)] == []


def test_callback_list_calls_each_hook_of_the_callbacks_that_define_it_in_order():
    calls = []

    class Recording(Callback):
        def __init__(self, tag):
            self.tag = tag

    for name in HOOKS:
        setattr(Recording, name, lambda self, *args, _name=name, **kwargs: calls.append((self.tag, _name, args,
                                                                                          kwargs)))
    callbacks = CallbackList([Recording("a"), Callback(), Recording("b")])
    for name in HOOKS:
        calls.clear()
        arguments = [p for p in inspect.signature(getattr(Callback, name)).parameters if p != "self"]
        getattr(callbacks, name)(*arguments)
        # setup and teardown get the stage by keyword, as Lightning passes it
        keywords = {"stage": "stage"} if name in ("setup", "teardown") else {}
        passed = tuple(a for a in arguments if a not in keywords)
        assert calls == [("a", name, passed, keywords), ("b", name, passed, keywords)], name


def test_callback_list_calls_a_hook_set_on_an_instance():
    calls = []
    plain = Callback()
    plain.on_train_epoch_end = lambda trainer, module: calls.append("epoch end")
    callbacks = CallbackList([plain])
    callbacks.on_train_epoch_end("trainer", "module")
    callbacks.on_train_epoch_start("trainer", "module")  # nobody does anything here: a no-op
    assert calls == ["epoch end"]


def test_callback_list_passes_dataloader_idx_only_when_the_loop_gives_one():
    calls = []

    class SingleLoader(Callback):  # written for one dataloader, as Lightning allows
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            calls.append(batch_idx)

    class SeveralLoaders(Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            calls.append((batch_idx, dataloader_idx))

    CallbackList([SingleLoader()]).on_validation_batch_end(None, None, None, None, 3)
    CallbackList([SeveralLoaders()]).on_validation_batch_end(None, None, None, None, 4, 1)
    assert calls == [3, (4, 1)]


def stub_trainer(value, epoch=0, step=8, batches_done=8):
    """What EarlyStopping reads of a trainer, at one position of a fit."""
    return SimpleNamespace(fast_dev_run=False, sanity_checking=False, state="fit", current_epoch=epoch,
                           global_step=step, fit_state=SimpleNamespace(batches_done=batches_done),
                           callback_metrics={"val_loss": torch.tensor(value)}, should_stop=False,
                           is_global_zero=True, check_val_every_n_epoch=1, enable_validation=True,
                           val_check_batch=4, num_training_batches=8)


def test_early_stopping_counts_a_validation_once_even_when_a_resumed_run_repeats_it():
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    stopper.on_validation_end(stub_trainer(1.0, step=4, batches_done=4), None)
    trainer = stub_trainer(1.5, step=8, batches_done=8)
    stopper.on_validation_end(trainer, None)
    assert stopper.wait_count == 1
    # a checkpoint written at the end of that validation, and a resumed run that runs it again
    resumed = EarlyStopping(monitor="val_loss", patience=2)
    resumed.load_state_dict(stopper.state_dict())
    again = stub_trainer(1.5, step=8, batches_done=8)
    resumed.on_validation_end(again, None)
    assert resumed.wait_count == 1 and not again.should_stop
    # the next validation counts: with accumulated gradients it may share the global step
    later = stub_trainer(1.5, step=8, batches_done=9)
    resumed.on_validation_end(later, None)
    assert resumed.wait_count == 2 and later.should_stop


def test_early_stopping_without_its_key_raises_a_value_error_naming_the_logged_keys():
    trainer = stub_trainer(1.0)
    with pytest.raises(ValueError, match=r"^EarlyStopping\(monitor='val_acc'\) found no such logged value at epoch 0, "
                                         r"step 8\. Logged keys: \['val_loss'\]\. Log it with "
                                         r"self\.log\('val_acc', value\), fix the name, or pass strict=False"):
        EarlyStopping(monitor="val_acc").on_validation_end(trainer, None)
    EarlyStopping(monitor="val_acc", strict=False).on_validation_end(trainer, None)
    assert not trainer.should_stop
