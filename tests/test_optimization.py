"""Accumulation, clipping, precision, schedulers and manual optimization."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ember

from conftest import Regressor, loader, quiet_trainer, regression_data


def fit_one_update(tmp_path, batch_size, accumulate):
    torch.manual_seed(0)
    model = Regressor(lr=0.1)
    trainer = quiet_trainer(tmp_path, max_steps=1, accumulate_grad_batches=accumulate, logger=False,
                            enable_checkpointing=False)
    trainer.fit(model, loader(regression_data(32), batch_size=batch_size))
    return model, trainer


def test_accumulating_4_batches_of_8_equals_one_batch_of_32(tmp_path):
    whole, _ = fit_one_update(tmp_path / "a", 32, 1)
    accumulated, trainer = fit_one_update(tmp_path / "b", 8, 4)
    assert trainer.global_step == 1
    for a, b in zip(whole.parameters(), accumulated.parameters()):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    assert not torch.equal(Regressor().net[1].weight, whole.net[1].weight)  # an update did happen


class GradRecorder(ember.Callback):
    def __init__(self):
        self.norms, self.max_abs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # the step's (clipped) gradients stay until the next batch's zero_grad, as in Lightning
        grads = [p.grad for p in pl_module.parameters()]
        self.norms.append(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item())
        self.max_abs.append(max(g.abs().max().item() for g in grads))


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping(tmp_path, algorithm):
    recorder = GradRecorder()
    trainer = quiet_trainer(tmp_path, max_steps=4, gradient_clip_val=0.01, gradient_clip_algorithm=algorithm,
                            callbacks=[recorder], logger=False, enable_checkpointing=False)
    trainer.fit(Regressor(), loader())
    if algorithm == "norm":
        assert max(recorder.norms) == pytest.approx(0.01, rel=1e-4)
    else:
        assert max(recorder.max_abs) == pytest.approx(0.01, rel=1e-6)


class DtypeProbe(Regressor):
    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.seen = (out.dtype, self.net[1].weight.dtype, x.dtype)
        return F.mse_loss(out.float(), y.to(out.dtype).float())


@pytest.mark.parametrize("precision, expected", [
    ("bf16-mixed", (torch.bfloat16, torch.float32, torch.float32)),
    ("bf16", (torch.bfloat16, torch.float32, torch.float32)),
    ("bf16-true", (torch.bfloat16, torch.bfloat16, torch.bfloat16)),
    ("64-true", (torch.float64, torch.float64, torch.float64)),
    (32, (torch.float32, torch.float32, torch.float32)),
])
def test_precision_on_cpu(tmp_path, precision, expected):
    model = DtypeProbe()
    trainer = quiet_trainer(tmp_path, max_steps=2, precision=precision, logger=False, enable_checkpointing=False)
    trainer.fit(model, loader())
    assert model.seen == expected


def test_unknown_precision_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="precision='fp8'.*'bf16-mixed'"):
        ember.Trainer(precision="fp8")


class Plateau(Regressor):
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))  # never improves

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def test_reduce_on_plateau_reads_the_monitored_metric(tmp_path):
    model = Plateau(lr=1.0)
    trainer = quiet_trainer(tmp_path, max_epochs=3, logger=False, enable_checkpointing=False, limit_val_batches=1)
    trainer.fit(model, loader(), loader())
    # epoch 0 sets the best; epochs 1 and 2 do not improve: two halvings
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25


class EpochScheduled(Regressor):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)]


def test_epoch_scheduler_steps_once_per_epoch(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=2, logger=False, enable_checkpointing=False)
    trainer.fit(EpochScheduled(), loader())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)


class Manual(Regressor):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        loss = F.mse_loss(self(x), y)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.log("loss", loss)


def test_manual_optimization_counts_steps_and_updates(tmp_path):
    torch.manual_seed(0)
    model = Manual()
    before = model.net[1].weight.clone()
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(model, loader())
    assert trainer.global_step == 8
    assert not torch.equal(before, model.net[1].weight)


class TwoOptimizers(Regressor):
    def configure_optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.Adam(self.parameters())]


def test_two_optimizers_need_manual_optimization(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="automatic_optimization = False"):
        trainer.fit(TwoOptimizers(), loader())
