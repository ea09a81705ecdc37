"""Every misuse users hit gets one clear message, and leaves the run folder intact."""

from __future__ import annotations


import pytest
import torch

import ember
from ember.checkpoint import CheckpointError

from conftest import Regressor, loader, quiet_trainer


def files_under(path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class Returns(Regressor):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return self.value(loss)


@pytest.mark.parametrize("value, error, message", [
    (lambda loss: loss.item(), TypeError, "returned a float; expected the loss as a tensor, a dict with a 'loss'"),
    (lambda loss: {"los": loss}, ValueError, r"dict without a 'loss' key \(keys: \['los'\]\)"),
    (lambda loss: loss.detach(), ValueError, "does not require grad"),
    (lambda loss: loss.repeat(3), ValueError, r"loss of shape \(3,\); it must be a scalar"),
])
def test_training_step_return_value_is_checked(tmp_path, value, error, message):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(error, match=message):
        trainer.fit(Returns(value), loader())


def test_a_dict_with_loss_and_none_are_accepted(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    outputs = iter([{"loss": None, "extra": 1}, None] * 4)

    def dict_or_skip(loss):
        output = next(outputs)
        return output if output is None else {**output, "loss": loss}

    trainer.fit(Returns(dict_or_skip), loader())
    assert trainer.global_step == 4  # the 4 batches returning None were skipped


class NoOptimizer(ember.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).mean()


class WrongOptimizer(NoOptimizer):
    def configure_optimizers(self):
        return {"optim": torch.optim.SGD(self.parameters(), lr=0.1)}


def test_configure_optimizers_missing_or_wrong(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(NotImplementedError, match=r"defines no configure_optimizers\(\).*torch.optim.Adam"):
        trainer.fit(NoOptimizer(), loader())
    with pytest.raises(TypeError, match=r"returned a dict with keys \['optim'\]; expected an optimizer"):
        trainer.fit(WrongOptimizer(), loader())


def test_unknown_trainer_argument_suggests_the_nearest():
    with pytest.raises(TypeError, match="unknown argument 'max_epoch'. Did you mean 'max_epochs'"):
        ember.Trainer(max_epoch=3)


@pytest.mark.parametrize("argument, replacement", [
    ("gpus", "accelerator='gpu', devices=N"),
    ("resume_from_checkpoint", r"trainer.fit\(model, ckpt_path=...\)"),
    ("auto_lr_find", r"Tuner\(trainer\).lr_find\(model\)"),
])
def test_removed_lightning_1_arguments_name_their_replacement(argument, replacement):
    with pytest.raises(TypeError, match=f"{argument}=...\\) was removed in Lightning 2.0.*{replacement}"):
        ember.Trainer(**{argument: 1})


class NaNLoss(Regressor):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if batch_idx == 2 else loss


def test_nan_loss_with_detect_anomaly_stops_with_the_batch_named(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, detect_anomaly=True)
    with pytest.raises(FloatingPointError, match="loss of nan at epoch 0, batch 2 \\(global step 2\\)"):
        trainer.fit(NaNLoss(), loader())


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(Regressor(hidden=8), loader())
    path = trainer.checkpoint_callback.best_model_path
    before = files_under(tmp_path)
    with pytest.raises(CheckpointError, match=r"(?s)missing from the checkpoint \(2\): net.1.weight, net.1.bias"
                                              r".*unexpected in the checkpoint \(4\)"):
        Regressor.load_from_checkpoint(path, hidden=0)
    with pytest.raises(CheckpointError, match=r"(?s)different shapes.*net.0.weight: checkpoint \(8, 4\) vs model \(3, 4\)"):
        Regressor.load_from_checkpoint(path, hidden=3)
    assert files_under(tmp_path) == before


def test_resuming_with_other_optimizers_says_what_differs(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(Regressor(), loader())

    class WithAdam(Regressor):
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters())

    path = trainer.checkpoint_callback.best_model_path
    before = files_under(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds optimizers \['SGD'\], but configure_optimizers built \['Adam'\]"):
        quiet_trainer(tmp_path, max_epochs=2, logger=False, enable_checkpointing=False).fit(
            WithAdam(), loader(), ckpt_path=path)
    assert files_under(tmp_path) == before


def test_weights_only_checkpoint_cannot_resume(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(Regressor(), loader())
    trainer.save_checkpoint(tmp_path / "weights.ckpt", weights_only=True)
    with pytest.raises(CheckpointError, match="holds weights only.*load_from_checkpoint"):
        quiet_trainer(tmp_path, max_epochs=2).fit(Regressor(), loader(), ckpt_path=tmp_path / "weights.ckpt")


def test_best_checkpoint_without_a_checkpoint_callback(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, enable_checkpointing=False, logger=False)
    model = Regressor()
    trainer.fit(model, loader())
    with pytest.raises(ValueError, match="ckpt_path='best'\\) needs a ModelCheckpoint callback"):
        trainer.test(model, loader(), ckpt_path="best")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at .*does not exist"):
        Regressor.load_from_checkpoint(tmp_path / "nope.ckpt")


def test_not_a_module(tmp_path):
    with pytest.raises(TypeError, match="expects an ember.Module"):
        quiet_trainer(tmp_path).fit(torch.nn.Linear(2, 2), loader())
