"""Resume defects found by trying kill points next to the tested ones, each fixed and held here.

A "kill" here is an exception raised from a callback at a chosen hook: nothing is written after it that
a SIGKILL would have prevented (ModelCheckpoint writes no file on an exception), and the resumed run is a
new Trainer and a new model, as in a new process. tests/test_killpoints.py kills real processes.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import ember
import ember.loggers
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.checkpoint import load_checkpoint, save_checkpoint

from conftest import regression_data


class Crash(Exception):
    pass


class KillAt(ember.Callback):
    """Raise at the n-th call (1-based) of `hook` (outside the sanity check)."""

    def __init__(self, hook: str, n: int):
        self.hook, self.n, self.calls = hook, n, 0

    def _count(self, hook, trainer):
        if hook != self.hook or trainer.sanity_checking:
            return
        self.calls += 1
        if self.calls == self.n:
            raise Crash(f"{self.hook}#{self.n}")

    def on_train_batch_start(self, trainer, *args):
        self._count("on_train_batch_start", trainer)

    def on_validation_end(self, trainer, *args):
        self._count("on_validation_end", trainer)

    def on_train_epoch_end(self, trainer, *args):
        self._count("on_train_epoch_end", trainer)


class Net(ember.Module):
    """Dropout (the RNG matters), Adam (state), a validation loss; options for the scheduler."""

    def __init__(self, scheduler: str = "none", manual: bool = False):
        super().__init__()
        self.strict = False
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        if self.hparams.scheduler == "plateau_step":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
            # strict=False: steps before the first validation skip; after it, each step reads val_loss
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step",
                                                             "monitor": "val_loss", "strict": self.strict}}
        return optimizer


def fit(root: Path, callbacks=(), ckpt_path=None, model_args=None, data_n=80, **kwargs):
    ember.seed_everything(7, verbose=False)
    model = Net(**(model_args or {}))
    options = dict(max_epochs=3, default_root_dir=root, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0, log_every_n_steps=1, deterministic=True)
    options.update(kwargs)
    callbacks = list(callbacks)
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(save_last=True))
    trainer = ember.Trainer(callbacks=callbacks, **options)
    train = DataLoader(regression_data(data_n, seed=3), batch_size=8, shuffle=True)
    val = DataLoader(regression_data(16, seed=4), batch_size=8)
    try:
        trainer.fit(model, train, val, ckpt_path=ckpt_path)
    except Crash:
        pass
    return model, trainer


def killed_and_resumed(tmp_path, hook, n, callbacks=(), **kwargs):
    """(uninterrupted model, trainer), (resumed model, trainer) for a kill at the n-th `hook`."""
    whole = fit(tmp_path / "whole", callbacks=[c() for c in callbacks], **kwargs)
    fit(tmp_path / "run", callbacks=[KillAt(hook, n)] + [c() for c in callbacks], **kwargs)
    resumed = fit(tmp_path / "run", callbacks=[c() for c in callbacks], ckpt_path="last", **kwargs)
    return whole, resumed


def assert_same_weights(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{name} differs"


def csv_rows(trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_checkpoint_in_on_validation_end_mid_epoch_does_not_run_that_validation_again(tmp_path):
    # val_check_interval=0.5: the default ModelCheckpoint saves after each validation, mid-epoch
    (whole, whole_trainer), (resumed, trainer) = killed_and_resumed(tmp_path, "on_train_batch_start", 8,
                                                                    val_check_interval=0.5)
    assert_same_weights(resumed, whole)
    steps = [row["step"] for row in csv_rows(trainer) if row.get("val_loss")]
    assert len(steps) == len(set(steps)) == 6, steps  # 2 validations x 3 epochs, each logged once
    assert steps == [row["step"] for row in csv_rows(whole_trainer) if row.get("val_loss")]


def test_early_stopping_counts_a_resumed_validation_once(tmp_path):
    def stopper():
        return EarlyStopping("val_loss", patience=1, min_delta=10.0)  # no improvement ever counts

    (whole, whole_trainer), (resumed, trainer) = killed_and_resumed(
        tmp_path, "on_train_batch_start", 6, callbacks=[stopper], val_check_interval=0.5, max_epochs=4)
    assert whole_trainer.global_step == trainer.global_step
    assert_same_weights(resumed, whole)


def test_validation_checkpoint_inside_an_accumulation_window_keeps_the_gradients(tmp_path):
    # 10 batches, accumulate 3, validate every 2 batches: validation after batch 2 and 4 is mid-window
    (whole, _), (resumed, trainer) = killed_and_resumed(tmp_path, "on_train_batch_start", 5,
                                                        accumulate_grad_batches=3, val_check_interval=2)
    assert trainer.global_step == 3 * 4  # windows of 3,3,3,1 per epoch
    assert_same_weights(resumed, whole)


def test_epoch_end_checkpoint_restores_callback_metrics_for_a_plateau_scheduler(tmp_path):
    (whole, _), (resumed, trainer) = killed_and_resumed(tmp_path, "on_train_batch_start", 11,
                                                        model_args={"scheduler": "plateau_step"})
    assert trainer.optimizers[0].param_groups[0]["lr"] < 0.01  # the scheduler did reduce it
    assert_same_weights(resumed, whole)


def test_a_run_that_early_stopped_does_not_train_on_after_resume(tmp_path, caplog):
    def stopper():
        return EarlyStopping("val_loss", patience=1, min_delta=10.0)

    whole, whole_trainer = fit(tmp_path / "whole", callbacks=[stopper()], max_epochs=10)
    assert whole_trainer.current_epoch < 9  # it did stop early
    with caplog.at_level(logging.INFO, logger="ember"):
        resumed, trainer = fit(tmp_path / "whole", callbacks=[stopper()], max_epochs=10, ckpt_path="last")
    assert trainer.global_step == whole_trainer.global_step
    assert_same_weights(resumed, whole)
    assert "had finished" in caplog.text


def test_resume_says_which_checkpoint_epoch_and_step(tmp_path, caplog):
    fit(tmp_path, callbacks=[KillAt("on_train_batch_start", 15)])
    with caplog.at_level(logging.INFO, logger="ember"):
        fit(tmp_path, ckpt_path="last")
    assert "Restored" in caplog.text and "epoch 1, batch 0, global step 10" in caplog.text


def test_worker_processes_make_a_mid_epoch_resume_warn(tmp_path):
    ember.seed_everything(0, verbose=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_last=True)
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False, logger=False, callbacks=[checkpoint])
    data = DataLoader(regression_data(80), batch_size=8, num_workers=2, shuffle=True)
    trainer.fit(Net(), data)
    path = tmp_path / "epoch=0-step=3.ckpt"
    saved = load_checkpoint(tmp_path / "last.ckpt")
    saved["loops"]["batches_done"], saved["loops"]["epoch_finished"] = 3, False  # make it mid-epoch
    save_checkpoint(saved, path)
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False, logger=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="num_workers=2.*worker processes.*sample_generator"):
        trainer.fit(Net(), data, ckpt_path=path)


def test_last_means_this_run_never_another_folder(tmp_path, caplog):
    other = tmp_path / ".venv" / "lib" / "last.ckpt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not ours")
    fit(tmp_path, logger=ember.loggers.CSVLogger(tmp_path, name="other_experiment"), max_epochs=1)
    with caplog.at_level(logging.INFO, logger="ember"):
        model, trainer = fit(tmp_path, ckpt_path="last", max_epochs=1)  # default logger: ember_logs
    assert trainer.ckpt_path is None and trainer.global_step == 10  # trained from scratch
    assert "starting fresh" in caplog.text and "ember_logs" in caplog.text


def test_last_continues_the_newest_version_of_this_logger(tmp_path):
    fit(tmp_path, callbacks=[KillAt("on_train_batch_start", 15)])
    model, trainer = fit(tmp_path, ckpt_path="last")
    assert trainer.logger.version == 0 and trainer.global_step == 30
    assert Path(trainer.ckpt_path) == tmp_path / "ember_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_configure_callbacks_checkpoint_replaces_the_trainers(tmp_path):
    class Own(Net):
        def configure_callbacks(self):
            return [ModelCheckpoint(dirpath=tmp_path / "own", monitor="val_loss", filename="{epoch}")]

        def test_step(self, batch, batch_idx):  # trainer.test needs one (a missing step is an error)
            return None

    ember.seed_everything(0, verbose=False)
    trainer = ember.Trainer(max_epochs=3, default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
    model = Own()
    data = DataLoader(regression_data(32), batch_size=8)
    trainer.fit(model, data, data)
    assert len(trainer.checkpoint_callbacks) == 1 and trainer.checkpoint_callback.monitor == "val_loss"
    trainer.test(model, DataLoader(regression_data(8), batch_size=8), ckpt_path="best", verbose=False)
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path
    assert not (Path(trainer.logger.log_dir) / "checkpoints").exists()  # the Trainer's default wrote nothing


def test_check_val_every_n_epoch_none_counts_batches_across_epochs(tmp_path):
    class Count(ember.Callback):
        runs = 0

        def on_validation_end(self, trainer, pl_module):
            Count.runs += 1

    trainer = ember.Trainer(max_epochs=3, val_check_interval=4, check_val_every_n_epoch=None,
                            default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, logger=False, callbacks=[Count()])
    trainer.fit(Net(), DataLoader(regression_data(32), batch_size=8), DataLoader(regression_data(8), batch_size=8))
    assert Count.runs == 3  # 12 batches, every 4


class Stream(IterableDataset):
    def __init__(self, n):
        self.data = regression_data(n)

    def __iter__(self):
        return iter(self.data)


def test_an_unsized_loaders_last_short_window_steps(tmp_path):
    def run(loader):
        ember.seed_everything(0, verbose=False)
        model = Net()
        model.net[2].p = 0.0
        trainer = ember.Trainer(max_epochs=2, accumulate_grad_batches=2, default_root_dir=tmp_path,
                                enable_progress_bar=False, enable_model_summary=False, logger=False,
                                enable_checkpointing=False)
        trainer.fit(model, loader)
        return model, trainer

    sized, sized_trainer = run(DataLoader(regression_data(40), batch_size=8))  # 5 batches: windows 2,2,1
    unsized, unsized_trainer = run(DataLoader(Stream(40), batch_size=8))
    assert unsized_trainer.global_step == sized_trainer.global_step == 6
    assert_same_weights(unsized, sized)


def test_namedtuple_and_dataclass_batches_are_cast_under_64_true(tmp_path):
    import dataclasses
    from collections import namedtuple

    Pair = namedtuple("Pair", "x y")

    @dataclasses.dataclass
    class Batch:
        x: torch.Tensor
        y: torch.Tensor

    seen = []

    class Typed(Net):
        def training_step(self, batch, batch_idx):
            seen.append((type(batch).__name__, batch.x.dtype))
            return F.mse_loss(self(batch.x), batch.y)

    for make in (lambda x, y: Pair(x, y), lambda x, y: Batch(x, y)):
        data = DataLoader([make(torch.randn(4, 4), torch.randn(4, 1)) for _ in range(2)], batch_size=None)
        trainer = ember.Trainer(max_epochs=1, precision="64-true", default_root_dir=tmp_path, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
        trainer.fit(Typed(), data)
    assert seen == [("Pair", torch.float64)] * 2 + [("Batch", torch.float64)] * 2


def test_resuming_from_a_lightning_checkpoint_says_what_to_do(tmp_path):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": Net().state_dict(), "epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.6.0",
                "loops": {"fit_loop": {}}, "optimizer_states": [], "lr_schedulers": []}, path)
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                            enable_model_summary=False)
    with pytest.raises(ember.checkpoint.CheckpointError, match="written by Lightning.*load_from_checkpoint"):
        trainer.fit(Net(), DataLoader(regression_data(16), batch_size=8), ckpt_path=path)


def test_a_checkpoint_missing_a_required_part_names_it(tmp_path):
    fit(tmp_path, max_epochs=1)
    saved = load_checkpoint(tmp_path / "ember_logs" / "version_0" / "checkpoints" / "last.ckpt")
    del saved["optimizers"], saved["rng"]
    save_checkpoint(saved, tmp_path / "partial.ckpt")
    with pytest.raises(ember.checkpoint.CheckpointError, match="lacks 'optimizers', 'rng'"):
        fit(tmp_path, ckpt_path=tmp_path / "partial.ckpt")


def test_an_empty_train_loader_warns(tmp_path):
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                            enable_model_summary=False)
    with pytest.warns(UserWarning, match="has no batches"):
        trainer.fit(Net(), DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, 1)), batch_size=8))
    assert trainer.global_step == 0


def test_reload_dataloaders_every_n_epochs_asks_for_new_loaders(tmp_path):
    class Reloading(Net):
        calls = []

        def train_dataloader(self):
            Reloading.calls.append(self.trainer.current_epoch)
            return DataLoader(regression_data(16), batch_size=8)

    trainer = ember.Trainer(max_epochs=5, reload_dataloaders_every_n_epochs=2, default_root_dir=tmp_path,
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False)
    trainer.fit(Reloading())
    assert Reloading.calls == [0, 2, 4]


def test_changed_arguments_on_resume_are_said_in_one_line_each(tmp_path, caplog):
    fit(tmp_path, callbacks=[KillAt("on_train_batch_start", 15)])
    with caplog.at_level(logging.WARNING, logger="ember"):
        fit(tmp_path, ckpt_path="last", max_epochs=4)
    lines = [r.getMessage() for r in caplog.records if "max_epochs" in r.getMessage()]
    assert lines == ["Resume: max_epochs was 3 in the checkpoint's run and is 4 in this Trainer; this Trainer's "
                     "value wins."]


def test_a_missing_plateau_monitor_is_a_value_error(tmp_path):
    class NoVal(Net):
        def validation_step(self, batch, batch_idx):
            pass

    ember.seed_everything(0, verbose=False)
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
    model = NoVal(scheduler="plateau_step")
    model.strict = True
    with pytest.raises(ValueError, match="ReduceLROnPlateau monitors 'val_loss'"):
        trainer.fit(model, DataLoader(regression_data(16), batch_size=8))


def test_an_epoch_without_any_optimizer_step_warns_once(tmp_path, caplog):
    class Skips(Net):
        def training_step(self, batch, batch_idx):
            return None

    trainer = ember.Trainer(max_epochs=3, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
    with caplog.at_level(logging.WARNING, logger="ember"):
        trainer.fit(Skips(), DataLoader(regression_data(16), batch_size=8))
    assert [r.getMessage() for r in caplog.records].count(
        "Epoch 0 ended without an optimizer step: training_step returned None for every batch (a None return "
        "skips the batch). Return the loss to train.") == 1
    assert len(caplog.records) == 1


def test_device_properties(tmp_path):
    trainer = ember.Trainer(accelerator="cpu", default_root_dir=tmp_path)
    assert (trainer.accelerator, trainer.num_devices, trainer.device_ids, trainer.root_device) == (
        "cpu", 1, [0], torch.device("cpu"))


def test_in_hook_restores_the_previous_hook_even_when_the_hook_raises():
    from ember.logs import LogCollector

    logs = LogCollector()
    with logs.in_hook("on_train_epoch_end"):
        with pytest.raises(Crash):
            with logs.in_hook("training_step"):
                assert logs.hook == "training_step"
                raise Crash()
        assert logs.hook == "on_train_epoch_end"
    assert logs.hook is None


def test_log_rows_of_a_resumed_run_hold_each_step_once(tmp_path):
    fit(tmp_path, callbacks=[KillAt("on_train_batch_start", 17)], val_check_interval=0.5)
    _, trainer = fit(tmp_path, ckpt_path="last", val_check_interval=0.5)
    rows = csv_rows(trainer)
    counts = Counter((key, row["step"]) for row in rows for key, value in row.items()
                     if value and key not in ("step", "epoch"))
    assert counts and max(counts.values()) == 1, [k for k, c in counts.items() if c > 1]


def test_two_checkpoint_callbacks_with_the_same_arguments_keep_separate_state(tmp_path):
    def callbacks():  # the same arguments, so the same (Lightning) state key; other folders
        return [ModelCheckpoint(dirpath=tmp_path / "a", every_n_train_steps=3),
                ModelCheckpoint(dirpath=tmp_path / "b", every_n_train_steps=3)]

    first = callbacks()
    assert first[0].state_key == first[1].state_key
    fit(tmp_path, callbacks=first + [KillAt("on_train_batch_start", 12)], max_epochs=2)
    path = tmp_path / "a" / "epoch=0-step=9.ckpt"
    saved = load_checkpoint(path)["callbacks"]
    states = [v for k, v in saved.items() if k.startswith("ModelCheckpoint")]
    assert sorted(s["dirpath"] for s in states) == [str(tmp_path / "a"), str(tmp_path / "b")]
    second = callbacks()
    _, trainer = fit(tmp_path, callbacks=second, max_epochs=2, ckpt_path="last")
    assert trainer.ckpt_path == str(tmp_path / "b" / "epoch=0-step=9.ckpt")  # the newest file of the run
    for callback, folder in zip(second, ("a", "b")):
        assert Path(callback.best_model_path) == tmp_path / folder / "epoch=1-step=18.ckpt"
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["epoch=1-step=18.ckpt"]


def test_checkpoint_callbacks_run_after_the_others_whatever_their_place(tmp_path):
    order = []

    class Recorder(ember.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("recorder")

    class Saver(ModelCheckpoint):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("checkpoint")
            super().on_train_epoch_end(trainer, pl_module)

    fit(tmp_path, callbacks=[Saver(dirpath=tmp_path / "c"), Recorder()], max_epochs=1)
    assert order == ["recorder", "checkpoint"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumable_loader_starts_at_the_batch_it_was_given(num_workers):
    """torch's multi-worker iterator calls iter() on the batch sampler twice and keeps the second: the skip
    must hold for the iterator that is used (a mid-epoch resume with workers once restarted the epoch)."""
    from ember.data import make_resumable

    dataset = TensorDataset(torch.arange(40))
    loader, resumable = make_resumable(DataLoader(dataset, batch_size=4, shuffle=True, num_workers=num_workers),
                                       seed=3)
    assert resumable
    whole = [batch[0].tolist() for batch in loader]
    loader.batch_sampler.start = 6
    assert [batch[0].tolist() for batch in loader] == whole[6:]
    assert [batch[0].tolist() for batch in loader] == whole  # the skip holds for one epoch
