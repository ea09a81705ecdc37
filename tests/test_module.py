"""Hyperparameters, load_from_checkpoint, freeze, validate/test/predict results, and a cheap import."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch


from conftest import Regressor, loader, quiet_trainer


class FromNamespace(Regressor):
    def __init__(self, args):
        super().__init__(features=args.features, lr=args.lr)
        self.save_hyperparameters(args)


def test_save_hyperparameters_from_init_arguments_and_objects():
    assert dict(Regressor(lr=0.5).hparams) == {"features": 4, "lr": 0.5, "dropout": 0.0, "hidden": 0}
    model = FromNamespace(argparse.Namespace(features=4, lr=0.2, batch_size=16))
    assert model.hparams.batch_size == 16 and model.hparams["lr"] == 0.2
    model.hparams.batch_size = 32  # the write-ups set the tuned batch size this way
    assert model.hparams["batch_size"] == 32


def test_load_from_checkpoint_rebuilds_with_hyperparameters_and_overrides(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    model = FromNamespace(argparse.Namespace(features=4, lr=0.2, batch_size=16))
    trainer.fit(model, loader())
    path = trainer.checkpoint_callback.best_model_path
    loaded = FromNamespace.load_from_checkpoint(path)
    assert loaded.hparams.batch_size == 16
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    plain = quiet_trainer(tmp_path / "p", max_epochs=1)
    plain.fit(Regressor(hidden=5), loader())
    again = Regressor.load_from_checkpoint(plain.checkpoint_callback.best_model_path, lr=0.9)
    assert again.hparams.hidden == 5 and again.hparams.lr == 0.9


def test_freeze_and_unfreeze():
    model = Regressor()
    model.freeze()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_validate_test_predict_return_values(tmp_path):
    model = Regressor()
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, loader(), loader())
    [validated] = trainer.validate(model, loader(), verbose=False)
    [tested] = trainer.test(model, loader(), ckpt_path="last", verbose=False)
    assert validated["val_loss"] == pytest.approx(tested["test_loss"])
    predictions = trainer.predict(model, loader(batch_size=16))
    assert len(predictions) == 4 and predictions[0].shape == (16, 1)
    two = trainer.test(model, [loader(), loader(batch_size=32)], verbose=False)
    assert list(two[0]) == ["test_loss/dataloader_idx_0"] and list(two[1]) == ["test_loss/dataloader_idx_1"]
    assert two[0]["test_loss/dataloader_idx_0"] == pytest.approx(two[1]["test_loss/dataloader_idx_1"], rel=1e-5)


def test_import_ember_loads_no_optional_library():
    code = ("import sys, ember, ember.lightning, ember.callbacks, ember.loggers, ember.lightning.cli, "
            "ember.lightning.utilities, ember.lightning.callbacks; "
            "heavy = ['tensorboard', 'mlflow', 'wandb', 'hydra', 'omegaconf', 'rich', 'torchmetrics', "
            "'transformers', 'matplotlib', 'lightning', 'pytorch_lightning', 'fastapi', 'onnx', 'yaml', "
            "'jsonargparse', 'psutil']; "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
