"""Checkpoints move between Lightning and ember in both directions, and Lightning 1.x Trainer arguments
work through `ember.lightning.Trainer` with a one-line note of their 2.x form."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
import ember.lightning as pl
from ember.checkpoint import CheckpointError, load_checkpoint
from ember.hparams import AttributeDict

L = pytest.importorskip("lightning.pytorch")
from lightning.fabric.utilities.data import AttributeDict as LightningAttributeDict  # noqa: E402


def loader(n: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class LightningNet(L.LightningModule):
    def __init__(self, hidden: int = 4, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class EmberNet(ember.Module):
    def __init__(self, hidden: int = 4, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def lightning_checkpoint(model, path) -> None:
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own notes (num_workers, tips)
        trainer.fit(model, loader())
    trainer.save_checkpoint(path)


def ember_trainer(tmp_path, cls=ember.Trainer, **kwargs):
    options = dict(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)
    options.update(kwargs)
    return cls(**options)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_lightning_checkpoint_loads_into_the_ember_module(tmp_path):
    torch.manual_seed(0)
    trained = LightningNet(hidden=5, lr=0.3)
    lightning_checkpoint(trained, tmp_path / "lightning.ckpt")

    model = EmberNet.load_from_checkpoint(tmp_path / "lightning.ckpt")

    assert same_weights(model, trained)
    assert dict(model.hparams) == {"hidden": 5, "lr": 0.3}
    # and it trains on from there with ember
    ember_trainer(tmp_path, max_steps=2, enable_checkpointing=False).fit(model, loader())


def test_an_ember_checkpoint_loads_into_the_lightning_module(tmp_path):
    torch.manual_seed(0)
    trained = EmberNet(hidden=6, lr=0.2)
    trainer = ember_trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(trained, loader())
    trainer.save_checkpoint(tmp_path / "ember.ckpt")

    model = LightningNet.load_from_checkpoint(tmp_path / "ember.ckpt")

    assert same_weights(model, trained)
    assert dict(model.hparams) == {"hidden": 6, "lr": 0.2}


class LightningConfigured(L.LightningModule):
    """Takes a config object next to another argument, so Lightning pickles the object's class."""

    def __init__(self, cfg, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(3, cfg.hidden)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class EmberConfigured(ember.Module):
    def __init__(self, cfg, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(3, cfg.hidden)  # attribute access, as the Lightning code had it


@pytest.mark.parametrize("config", [LightningAttributeDict(hidden=7, extra=LightningAttributeDict(depth=2)),
                                    argparse.Namespace(hidden=7)])
def test_lightning_hyperparameter_objects_load_safely(tmp_path, config):
    torch.manual_seed(0)
    trained = LightningConfigured(config, scale=2.0)
    path = tmp_path / "configured.ckpt"
    lightning_checkpoint(trained, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what ember's loader has to get past

    model = EmberConfigured.load_from_checkpoint(path)

    assert same_weights(model, trained)
    assert model.hparams.scale == 2.0
    loaded = load_checkpoint(path)["hyper_parameters"]["cfg"]
    assert loaded.hidden == 7
    if isinstance(config, LightningAttributeDict):
        assert isinstance(loaded, AttributeDict) and loaded.extra.depth == 2


class Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_other_pickled_objects_are_still_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload()}}, path)
    with pytest.raises(CheckpointError, match="holds pickled Python objects that a safe load refuses"):
        load_checkpoint(path)
    assert "payload ran" not in capsys.readouterr().out


# --- Lightning 1.x Trainer arguments --------------------------------------------------------------------


def one_note(make):
    """Call `make()`, check that it gave exactly one one-line LightningDeprecationWarning, return both."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make()
    notes = [w for w in caught if issubclass(w.category, pl.LightningDeprecationWarning)]
    assert len(notes) == 1, [str(w.message) for w in caught]
    message = str(notes[0].message)
    assert "\n" not in message
    return result, message


@pytest.mark.parametrize("argument, two_x", [
    ({"gpus": 0}, "accelerator='cpu'"),
    ({"accelerator": "dp"}, "strategy='ddp' (Lightning 2.x removed it"),
    ({"accelerator": "ddp"}, "strategy='ddp'. There is one device here, so ember runs on it."),
])
def test_lightning_1x_device_arguments(tmp_path, argument, two_x):
    trainer, message = one_note(lambda: ember_trainer(tmp_path, cls=pl.Trainer, max_epochs=1, **argument))
    assert "is Lightning 1.x; in 2.x it is" in message and two_x in message
    model = EmberNet()
    trainer.fit(model, loader())
    assert trainer.global_step == 4 and trainer.device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="accelerator='auto' picks the GPUs where there are some")
@pytest.mark.parametrize("old, new", [("dp", "ddp"), ("ddp", "ddp"), ("ddp_spawn", "ddp_spawn")])
def test_lightning_1x_ddp_accelerators_select_the_2x_strategy(tmp_path, old, new):
    from ember.strategies import DDPSpawnStrategy, DDPStrategy

    trainer, message = one_note(lambda: pl.Trainer(accelerator=old, devices=2, default_root_dir=tmp_path))
    assert type(trainer.strategy) is (DDPSpawnStrategy if new == "ddp_spawn" else DDPStrategy)
    assert (pl.strategies.DDPStrategy, pl.strategies.DDPSpawnStrategy) == (DDPStrategy, DDPSpawnStrategy)
    assert trainer.world_size == 2
    assert f"Trainer(accelerator={old!r}) is Lightning 1.x; in 2.x it is strategy={new!r}" in message
    assert message.endswith(f"ember runs strategy={new!r}.")


@pytest.mark.skipif(torch.cuda.is_available(), reason="gpus=-1 selects the GPU where there is one")
def test_gpus_minus_one_without_a_gpu_runs_on_the_cpu(tmp_path):
    trainer, message = one_note(lambda: ember_trainer(tmp_path, cls=pl.Trainer, max_epochs=1, gpus=-1))
    assert "Trainer(gpus=-1) is Lightning 1.x; in 2.x it is accelerator='gpu', devices=-1." in message
    assert "runs on the CPU" in message
    trainer.fit(EmberNet(), loader())
    assert trainer.device == torch.device("cpu")


def test_resume_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    first = ember_trainer(tmp_path, max_epochs=1, callbacks=[
        ember.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)])
    first.fit(EmberNet(), loader())

    path = tmp_path / "ckpts" / "last.ckpt"
    trainer, message = one_note(lambda: ember_trainer(tmp_path, cls=pl.Trainer, max_epochs=2,
                                                      enable_checkpointing=False, resume_from_checkpoint=path))
    assert "Trainer(resume_from_checkpoint=path) is Lightning 1.x; in 2.x it is trainer.fit(model, " \
           "ckpt_path=path)." in message
    model = EmberNet()
    trainer.fit(model, loader())
    assert model.steps == 4  # only the second epoch ran
    assert (trainer.current_epoch, trainer.global_step) == (2, 8)


def test_ember_trainer_refuses_gpus_and_names_the_replacement():
    with pytest.raises(TypeError, match=r"Trainer\(gpus=\.\.\.\) was removed in Lightning 2\.0 and ember does not "
                                        r"take it; use accelerator='gpu', devices=N instead\."):
        ember.Trainer(gpus=1)


# --- Lightning's Trainer defaults and arguments -----------------------------------------------------------


class ImageLogging(EmberNet):
    def training_step(self, batch, batch_idx):
        self.logger.experiment.add_image("input", torch.rand(3, 4, 4), self.global_step)
        return super().training_step(batch, batch_idx)


def test_the_lightning_trainer_logs_to_tensorboard_under_lightning_logs(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=2, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(ImageLogging(), loader())
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert trainer.log_dir == str(log_dir)
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("input")) == 2
    assert (log_dir / "checkpoints").is_dir()  # ModelCheckpoint's default folder follows the logger
    # and Lightning itself puts the same things in the same places
    lightning = L.Trainer(default_root_dir=tmp_path / "L", accelerator="cpu", max_steps=1)
    assert type(lightning.logger).__name__ == type(trainer.logger).__name__ == "TensorBoardLogger"
    assert lightning.logger.log_dir == str(tmp_path / "L" / "lightning_logs" / "version_0")


def test_the_ember_trainer_keeps_its_csv_logger_under_ember_logs(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path)
    assert type(trainer.logger).__name__ == "CSVLogger"
    assert trainer.log_dir == str(tmp_path / "ember_logs" / "version_0")


class _Recording:
    """Records the first input value of each training and validation batch (mixed into either library's net)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", self.current_epoch, round(batch[0][0, 0].item(), 5)))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", self.current_epoch, round(batch[0][0, 0].item(), 5)))


class Recorded(_Recording, EmberNet):
    pass


class LightningRecorded(_Recording, LightningNet):
    pass


@pytest.mark.parametrize("overfit", [2, 0.5])
def test_overfit_batches_uses_the_same_unshuffled_batches_as_lightning(tmp_path, overfit):
    def shuffled():
        return DataLoader(loader().dataset, batch_size=4, shuffle=True)  # 4 batches

    runs = []
    for trainer_class, model, extra in ((pl.Trainer, Recorded(), {}),
                                        (L.Trainer, LightningRecorded(), {"accelerator": "cpu"})):
        trainer = trainer_class(default_root_dir=tmp_path / trainer_class.__module__, max_epochs=2, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, overfit_batches=overfit, **extra)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, shuffled(), shuffled())
        runs.append((model.seen, [str(w.message) for w in caught]))
    (ours, our_notes), (theirs, _) = runs
    assert ours == theirs
    first = [round(x, 5) for x in loader().dataset.tensors[0][[0, 4], 0].tolist()]  # dataset order
    assert [v for stage, epoch, v in ours if stage == "train"] == first * 2
    assert [v for stage, epoch, v in ours if stage == "val"] == first * 2
    assert sum("turns off the shuffling of the training dataloader" in n for n in our_notes) == 1
    assert sum("turns off the shuffling of the validation dataloader" in n for n in our_notes) == 1


def test_overfit_batches_refuses_a_loader_it_cannot_put_in_order(tmp_path):
    from torch.utils.data import BatchSampler, RandomSampler

    data = loader().dataset
    custom = DataLoader(data, batch_sampler=BatchSampler(RandomSampler(data), batch_size=4, drop_last=False))
    trainer = ember_trainer(tmp_path, max_epochs=1, overfit_batches=1)
    with pytest.raises(ValueError, match=r"overfit_batches=...\) needs the same training batches.*shuffle=False"):
        trainer.fit(EmberNet(), custom)


def test_hydra_containers_are_accepted_for_callbacks_and_logger(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    hydra_utils = pytest.importorskip("hydra.utils")
    config = omegaconf.OmegaConf.create({
        "_target_": "ember.lightning.Trainer", "max_epochs": 1, "default_root_dir": str(tmp_path),
        "enable_progress_bar": False, "enable_model_summary": False,
        "logger": [{"_target_": "ember.loggers.CSVLogger", "save_dir": str(tmp_path), "name": "csv"}],
        "callbacks": [{"_target_": "ember.callbacks.EarlyStopping", "monitor": "train_loss"}]})
    trainer = hydra_utils.instantiate(config)  # callbacks and logger arrive as ListConfigs
    assert [type(c).__name__ for c in trainer.callbacks][:1] == ["EarlyStopping"]
    assert type(trainer.logger).__name__ == "CSVLogger" and trainer.logger.name == "csv"
    named = hydra_utils.instantiate(omegaconf.OmegaConf.create(
        {"stop": {"_target_": "ember.callbacks.EarlyStopping", "monitor": "train_loss"}}))  # a DictConfig
    trainer = ember_trainer(tmp_path, callbacks=named)
    assert [type(c).__name__ for c in trainer.callbacks][:1] == ["EarlyStopping"]
