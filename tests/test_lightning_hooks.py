"""Lightning code runs unchanged: the Module hooks it overrides are honoured (optimizer_step with its
closure, optimizer_zero_grad, backward, lr_scheduler_step, configure_model, the eval/train mode hooks),
manual optimization with several optimizers works as Lightning documents it, steps are called as their
signature asks, and a loop switched off the Lightning way is skipped. Where a test can, it runs the same
program under Lightning and compares."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ember

from lightning_twins import data, fit_both, lightning, quiet_options, same_weights

WARMUP_STEPS, BASE_LR = 6, 0.1


def warmup_module(base: type) -> type:
    """The learning-rate warm-up of Lightning's docs: set pg['lr'], then step with the closure."""

    class WarmUp(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.calls = []

        def training_step(self, batch, batch_idx):
            self.calls.append(("training_step", batch_idx))
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            self.calls.append(("optimizer_step", batch_idx, isinstance(optimizer, torch.optim.SGD)))
            if self.trainer.global_step < WARMUP_STEPS:
                scale = (self.trainer.global_step + 1) / WARMUP_STEPS
                for group in optimizer.param_groups:
                    group["lr"] = scale * BASE_LR
            optimizer.step(closure=optimizer_closure)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=BASE_LR, momentum=0.9)

    return WarmUp


def plain_warmup_loop(epochs: int, accumulate: int = 1) -> nn.Linear:
    """The same training written as a plain PyTorch loop: the weights the warm-up must produce."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=BASE_LR, momentum=0.9)
    step = 0
    for _ in range(epochs):
        batches = list(data())
        for i, (x, y) in enumerate(batches):
            if i % accumulate == 0:
                optimizer.zero_grad()
            (F.mse_loss(net(x), y) / accumulate).backward()
            if (i + 1) % accumulate == 0 or i + 1 == len(batches):
                if step < WARMUP_STEPS:
                    for group in optimizer.param_groups:
                        group["lr"] = (step + 1) / WARMUP_STEPS * BASE_LR
                optimizer.step()
                step += 1
    return net


def test_the_warmup_pattern_trains_at_the_intended_rate(tmp_path):
    torch.manual_seed(0)
    model = warmup_module(ember.Module)()
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=3, **quiet_options())
    trainer.fit(model, data())
    assert trainer.global_step == 12
    assert same_weights(model.net, plain_warmup_loop(epochs=3))
    # the step is given the optimizer (seen as an SGD) and runs training_step inside its closure
    assert model.calls[:4] == [("optimizer_step", 0, True), ("training_step", 0),
                               ("optimizer_step", 1, True), ("training_step", 1)]
    assert trainer.optimizers[0].param_groups[0]["lr"] == BASE_LR


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_warmup_matches_lightning(tmp_path, accumulate):
    ours, trainer, theirs, their_trainer = fit_both(warmup_module, tmp_path, max_epochs=3,
                                                    accumulate_grad_batches=accumulate)
    assert same_weights(ours, theirs)
    assert trainer.global_step == their_trainer.global_step == 12 // accumulate
    # with accumulation, optimizer_step (and its closure) comes on the window's last batch only
    assert ours.calls == theirs.calls
    assert same_weights(ours.net, plain_warmup_loop(epochs=3, accumulate=accumulate))


def test_an_optimizer_step_that_never_runs_its_closure_is_an_error(tmp_path):
    class Forgetful(warmup_module(ember.Module)):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            optimizer.step()  # the closure (training_step + backward) never runs

    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=2, **quiet_options())
    with pytest.raises(RuntimeError, match=r"Forgetful.optimizer_step returned without running the closure.*"
                                           r"optimizer.step\(closure=optimizer_closure\)"):
        trainer.fit(Forgetful(), data())


def test_stepping_the_optimizer_view_outside_optimizer_step_is_an_error(tmp_path):
    class Eager(warmup_module(ember.Module)):
        def training_step(self, batch, batch_idx):
            self.optimizers().step()
            return super().training_step(batch, batch_idx)

        optimizer_step = ember.Module.optimizer_step

    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=2, **quiet_options())
    with pytest.raises(RuntimeError, match="outside optimizer_step while automatic optimization is on"):
        trainer.fit(Eager(), data())


def hooks_module(base: type) -> type:
    """Overrides optimizer_zero_grad, backward and lr_scheduler_step, recording their arguments."""

    class Hooks(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.calls = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.mse_loss(self.net(x), y))

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            self.calls.append(("zero_grad", epoch, batch_idx))
            optimizer.zero_grad()

        def backward(self, loss, *args, **kwargs):
            self.calls.append(("backward", round(loss.item(), 4)))
            (2 * loss).backward(*args, **kwargs)  # a rule of one's own: twice the gradient

        def lr_scheduler_step(self, scheduler, metric):
            self.calls.append(("lr_scheduler_step", type(scheduler).__name__,
                               None if metric is None else round(float(metric), 4)))
            scheduler.step() if metric is None else scheduler.step(metric)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
            step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
            return [optimizer], [{"scheduler": step, "interval": "step"},
                                 {"scheduler": plateau, "monitor": "val_loss"}]

    return Hooks


def test_zero_grad_backward_and_scheduler_hooks_are_called_as_in_lightning(tmp_path):
    ours, trainer, theirs, _ = fit_both(hooks_module, tmp_path, max_epochs=2, accumulate_grad_batches=2,
                                        fit=lambda trainer, model: trainer.fit(model, data(), data()))
    assert ours.calls == theirs.calls
    assert [c for c in ours.calls if c[0] == "zero_grad"] == [("zero_grad", 0, 0), ("zero_grad", 0, 2),
                                                              ("zero_grad", 1, 0), ("zero_grad", 1, 2)]
    assert sum(c[0] == "lr_scheduler_step" and c[2] is not None for c in ours.calls) == 2  # the plateau
    assert same_weights(ours, theirs)


def test_an_overridden_backward_is_used_by_manual_backward_too(tmp_path):
    class Manual(hooks_module(ember.Module)):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(super().training_step(batch, batch_idx))
            opt.step()

    model = Manual()
    ember.Trainer(default_root_dir=tmp_path, max_steps=2, **quiet_options()).fit(model, data())
    assert [c[0] for c in model.calls] == ["backward", "backward"]


def test_configure_model_builds_layers_after_setup_before_the_optimizers(tmp_path):
    class Lazy(ember.Module):
        def __init__(self):
            super().__init__()
            self.net = None
            self.calls = []

        def setup(self, stage):
            self.calls.append(f"setup {stage}")

        def configure_model(self):
            self.calls.append("configure_model")
            if self.net is None:  # idempotent: it runs in every stage
                self.net = nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self.net(batch[0]), batch[1])

        def test_step(self, batch, batch_idx):
            self.log("test_loss", F.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            self.calls.append("configure_optimizers")
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Lazy()
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, precision="64-true", **quiet_options())
    trainer.fit(model, data())
    assert model.calls == ["setup fit", "configure_model", "configure_optimizers"]
    assert model.net.weight.dtype == torch.float64  # built before the precision converted the model
    trainer.test(model, data(), verbose=False)
    assert model.calls[3:] == ["setup test", "configure_model"]


class FrozenNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        return self.head(self.norm(x))


def frozen_norm_module(base: type) -> type:
    class Finetune(base):
        """Fine-tuning with a frozen BatchNorm: the module puts it in eval mode once, in __init__."""

        def __init__(self):
            super().__init__()
            self.body = FrozenNorm()
            self.body.norm.eval()
            self.modes = []

        def training_step(self, batch, batch_idx):
            self.modes.append((self.training, self.body.norm.training))
            return F.mse_loss(self.body(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.modes.append(("val", self.training, self.body.norm.training))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Finetune


def test_modes_set_on_submodules_stay_and_validation_puts_them_back(tmp_path):
    ours, _, theirs, _ = fit_both(frozen_norm_module, tmp_path, max_epochs=2, limit_val_batches=1,
                                  fit=lambda trainer, model: trainer.fit(model, data(), data()))
    assert ours.modes == theirs.modes
    assert set(ours.modes) == {(True, False), ("val", False, False)}
    assert same_weights(ours, theirs)  # the running statistics of the frozen norm were not updated


def test_an_overridden_on_validation_model_train_is_called_instead_of_putting_modes_back(tmp_path):
    class Custom(frozen_norm_module(ember.Module)):
        def on_validation_model_train(self):
            self.modes.append("model_train")
            self.train()  # everything back to train mode, the norm included

    model = Custom()
    ember.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_val_batches=1, **quiet_options()).fit(
        model, data(), data())
    assert model.modes[-2:] == [("val", False, False), "model_train"]
    assert model.body.norm.training


def gan_module(base: type) -> type:
    """Manual optimization of a tiny GAN, written as Lightning's docs write it."""

    class GAN(base):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.generator = nn.Linear(2, 3)
            self.discriminator = nn.Linear(3, 1)
            self.discriminator.bias.requires_grad_(False)  # frozen before the fit: toggling keeps it so
            self.seen = []
            self.noise = torch.Generator().manual_seed(0)  # the same draws whatever else draws random numbers

        def training_step(self, batch):  # no batch_idx: called with the batch alone
            real = batch[0]
            opt_g, opt_d = self.optimizers()
            sched_g, _ = self.lr_schedulers()
            noise = torch.randn(real.shape[0], 2, generator=self.noise)

            self.toggle_optimizer(opt_g)
            self.seen.append(("g", self.discriminator.weight.requires_grad, self.generator.weight.requires_grad))
            fake = self.generator(noise)
            g_loss = F.softplus(-self.discriminator(fake)).mean()
            self.manual_backward(g_loss)
            self.clip_gradients(opt_g, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            opt_g.step()
            opt_g.zero_grad()
            self.untoggle_optimizer(opt_g)

            self.toggle_optimizer(opt_d)
            d_loss = (F.softplus(-self.discriminator(real)) + F.softplus(self.discriminator(fake.detach()))).mean()
            self.manual_backward(d_loss)
            opt_d.step()
            opt_d.zero_grad()
            self.untoggle_optimizer(opt_d)
            sched_g.step()
            self.seen.append(("after", self.discriminator.weight.requires_grad,
                              self.discriminator.bias.requires_grad, isinstance(opt_g, torch.optim.Optimizer)))
            self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True)

        def configure_optimizers(self):
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=0.01)
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=0.01)
            return [opt_g, opt_d], [torch.optim.lr_scheduler.StepLR(opt_g, 1, 0.5),
                                    torch.optim.lr_scheduler.StepLR(opt_d, 1, 0.5)]

    return GAN


def test_a_gan_trains_as_under_lightning(tmp_path):
    ours, trainer, theirs, their_trainer = fit_both(gan_module, tmp_path, max_epochs=2)
    assert ours.seen == theirs.seen
    assert ours.seen[:2] == [("g", False, True), ("after", True, False, True)]
    assert trainer.global_step == their_trainer.global_step == 16  # two optimizer steps per batch
    assert same_weights(ours, theirs)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 8)


def test_the_optimizer_views_share_the_optimizers_state(tmp_path):
    seen = {}

    class Probe(gan_module(ember.Module)):
        def on_train_start(self):
            opt_g, opt_d = self.optimizers()
            raw_g, _ = self.optimizers(use_pl_optimizer=False)
            seen.update(view_is_adam=isinstance(opt_g, torch.optim.Adam), raw=type(raw_g) is torch.optim.Adam,
                        groups=opt_g.param_groups is raw_g.param_groups, same=opt_g.optimizer is raw_g,
                        repr=repr(opt_g) == repr(raw_g))
            opt_g.param_groups[0]["lr"] = 0.02  # through the view, on the optimizer

    model = Probe()
    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=2, **quiet_options())
    trainer.fit(model, data())
    assert seen == dict(view_is_adam=True, raw=True, groups=True, same=True, repr=True)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.02 * 0.5)  # one scheduler step
    # the LR scheduler wraps optimizer.step on the instance; the view's step still counts each step
    assert trainer.global_step == 2


def test_manual_optimization_refuses_accumulate_grad_batches(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=2, accumulate_grad_batches=2, **quiet_options())
    with pytest.raises(ValueError, match=r"accumulate_grad_batches=2\) accumulates in automatic optimization only"):
        trainer.fit(gan_module(ember.Module)(), data())


def steps_module(base: type) -> type:
    """Steps without batch_idx, and one taking dataloader_idx for several dataloaders."""

    class Steps(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.calls = []

        def training_step(self, batch):
            return F.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch):
            self.calls.append("validation_step")
            self.log("val_loss", F.mse_loss(self.net(batch[0]), batch[1]))

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self.calls.append(("test_step", batch_idx, dataloader_idx))

        def predict_step(self, batch):
            return self.net(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Steps


def test_steps_are_called_as_their_signature_asks(tmp_path):
    def run(trainer, model):
        trainer.fit(model, data(), data())
        trainer.test(model, [data(n=8), data(n=16)], verbose=False)
        model.predictions = trainer.predict(model, data(n=8))

    ours, _, theirs, _ = fit_both(steps_module, tmp_path, max_epochs=1, limit_val_batches=2, fit=run)
    assert ours.calls == theirs.calls
    assert ours.calls[-3:] == [("test_step", 0, 0), ("test_step", 0, 1), ("test_step", 1, 1)]
    assert torch.equal(ours.predictions[0], theirs.predictions[0])


def test_several_dataloaders_need_a_dataloader_idx_argument(tmp_path):
    class NoIndex(steps_module(ember.Module)):
        def test_step(self, batch, batch_idx):
            pass

    trainer = ember.Trainer(default_root_dir=tmp_path, **quiet_options())
    with pytest.raises(TypeError, match=r"several dataloaders, but NoIndex.test_step\(\) has no dataloader_idx"):
        trainer.test(NoIndex(), [data(), data()], verbose=False)

    class Required(steps_module(ember.Module)):
        def test_step(self, batch, batch_idx, dataloader_idx):
            pass

    with pytest.raises(TypeError, match=r"one dataloader, but Required.test_step\(\) requires a dataloader_idx"):
        trainer.test(Required(), data(), verbose=False)


def disabled_module(base: type, switched_off: str) -> type:
    class Disabled(steps_module(base)):
        def __init__(self):
            super().__init__()
            setattr(self, switched_off, None)

        def val_dataloader(self):
            return data()

    return Disabled


@pytest.mark.parametrize("switched_off", ["validation_step", "val_dataloader"])
def test_a_validation_switched_off_with_none_is_skipped(tmp_path, switched_off):
    def run(trainer, model):
        trainer.fit(model, data())
        model.metrics = sorted(trainer.callback_metrics)

    ours, trainer, theirs, _ = fit_both(lambda base: disabled_module(base, switched_off), tmp_path, max_epochs=2,
                                        num_sanity_val_steps=2, fit=run)
    assert ours.calls == theirs.calls == []
    assert ours.metrics == theirs.metrics == []
    assert same_weights(ours, theirs)


@pytest.mark.parametrize("stage, step", [("fit", "training_step"), ("validate", "validation_step"),
                                         ("test", "test_step"), ("predict", "predict_step")])
def test_running_a_stage_whose_step_is_none_says_so(tmp_path, stage, step):
    model = disabled_module(ember.Module, step)()
    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=1, **quiet_options())
    with pytest.raises(ValueError, match=rf"trainer.{stage}\(\) runs Disabled.{step}\(batch, batch_idx\), which "
                                         r"is None\."):
        getattr(trainer, stage)(model, data())


def test_a_stage_without_its_step_says_so(tmp_path):
    class TrainOnly(ember.Module):
        def training_step(self, batch, batch_idx):
            return batch[0].sum()

    trainer = ember.Trainer(default_root_dir=tmp_path, **quiet_options())
    with pytest.raises(ValueError, match=r"trainer.test\(\) runs TrainOnly.test_step\(batch, batch_idx\), which is "
                                         r"not defined\."):
        trainer.test(TrainOnly(), data())


def test_a_train_dataloader_set_to_none_says_where_data_can_come_from(tmp_path):
    model = steps_module(ember.Module)()
    model.train_dataloader = None
    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=1, **quiet_options())
    with pytest.raises(ValueError, match="found no training data"):
        trainer.fit(model)


def test_lightning_refuses_the_same_stages(tmp_path):
    """The errors above are Lightning's behaviour too (a check that the comparison holds)."""
    L = lightning()
    trainer = L.Trainer(accelerator="cpu", default_root_dir=tmp_path, **quiet_options())
    with pytest.raises(Exception, match="test_step"):
        trainer.test(disabled_module(L.LightningModule, "test_step")(), data(), verbose=False)


def test_clip_gradients_under_16_mixed_clips_the_true_gradients(tmp_path):
    class Clipped(ember.Module):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net = nn.Linear(3, 1)
            self.moves = []

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            before = self.net.weight.detach().clone()
            self.manual_backward(F.mse_loss(self.net(batch[0]), batch[1]))
            self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            opt.step()  # after the clip's unscale: the step does not unscale a second time
            opt.zero_grad()
            self.moves.append(torch.linalg.vector_norm(self.net.weight.detach() - before).item())

        def configure_optimizers(self):
            return torch.optim.SGD(self.net.parameters(), lr=1.0)

    model = Clipped()
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=4, precision="16-mixed", **quiet_options())
    trainer.fit(model, data())
    stepped = [m for m in model.moves if m > 0]  # a step with inf/nan gradients is skipped by the scaler
    # lr 1: a step moves the weights by the gradient's norm, clipped to 0.5 in true (unscaled) units
    assert all(m <= 0.5 + 1e-3 for m in stepped) and max(stepped) > 0.49


def lbfgs_module(base: type) -> type:
    class Fitted(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.evaluations = 0

        def training_step(self, batch, batch_idx):
            self.evaluations += 1
            return F.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters(), lr=0.5, max_iter=5)

    return Fitted


def test_lbfgs_steps_with_a_closure_as_in_lightning(tmp_path):
    ours, trainer, theirs, their_trainer = fit_both(lbfgs_module, tmp_path, max_epochs=2)
    assert ours.evaluations == theirs.evaluations > trainer.global_step == their_trainer.global_step == 8
    assert same_weights(ours, theirs)


def test_a_step_that_requires_dataloader_idx_is_fine_while_its_loop_does_not_run(tmp_path):
    class Strict(steps_module(ember.Module)):
        def validation_step(self, batch, batch_idx, dataloader_idx):
            pass

    trainer = ember.Trainer(default_root_dir=tmp_path, max_steps=1, **quiet_options())
    trainer.fit(Strict(), data())  # no validation data: validation_step is never called, nor checked
    assert trainer.global_step == 1


def mode_hooks_module(base: type) -> type:
    class ModeHooks(steps_module(base)):
        def on_test_model_eval(self):
            self.calls.append("on_test_model_eval")
            super().on_test_model_eval()

        def on_test_model_train(self):
            self.calls.append(("on_test_model_train", self.training))
            super().on_test_model_train()

        def on_predict_model_eval(self):
            self.calls.append("on_predict_model_eval")
            super().on_predict_model_eval()

    return ModeHooks


def test_test_and_predict_mode_hooks_are_called_as_in_lightning(tmp_path):
    def run(trainer, model):
        model.eval()  # Lightning's test and predict put back the modes they found
        trainer.test(model, data(n=8), verbose=False)
        trainer.predict(model, data(n=8))
        model.calls.append(("training after", model.training))

    ours, _, theirs, _ = fit_both(mode_hooks_module, tmp_path, fit=run)
    assert ours.calls == theirs.calls
    # the overridden on_test_model_train runs (its super() puts the model in train mode: Lightning's default),
    # and predict puts back the mode it found
    assert ours.calls == ["on_test_model_eval", ("test_step", 0, 0), ("on_test_model_train", False),
                          "on_predict_model_eval", ("training after", True)]


def epoch_scheduled_module(base: type) -> type:
    class EpochScheduled(steps_module(base)):
        def __init__(self):
            super().__init__()
            self.rates = []

        def rate(self, where):
            self.rates.append((where, self.trainer.current_epoch, self.trainer.optimizers[0].param_groups[0]["lr"]))

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.rate(f"batch_end {batch_idx}")

        def on_validation_start(self):
            self.rate("validation")

        def on_train_epoch_end(self):
            self.rate("epoch_end")

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)]

    return EpochScheduled


def test_epoch_schedulers_step_with_the_epochs_last_batch_as_in_lightning(tmp_path):
    ours, _, theirs, _ = fit_both(epoch_scheduled_module, tmp_path, max_epochs=2, limit_val_batches=1,
                                  fit=lambda trainer, model: trainer.fit(model, data(), data()))
    assert ours.rates == theirs.rates
    # the last batch's on_train_batch_end, the epoch's validation and its end see the stepped rate
    assert ours.rates[2:6] == [("batch_end 2", 0, 0.1), ("batch_end 3", 0, 0.05), ("validation", 0, 0.05),
                               ("epoch_end", 0, 0.05)]


def skipping_module(base: type) -> type:
    """`on_train_batch_start` returning -1 skips the rest of the epoch (Lightning's documented contract)."""

    class Skipping(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 1)
            self.trained = []

        def on_train_batch_start(self, batch, batch_idx):
            if self.current_epoch == 0 and batch_idx == 2:
                return -1
            return None

        def training_step(self, batch, batch_idx):
            self.trained.append((self.current_epoch, batch_idx))
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]

    return Skipping


@pytest.mark.parametrize("accumulate", [1, 3])
def test_on_train_batch_start_returning_minus_one_ends_the_epoch_as_in_lightning(tmp_path, accumulate):
    ours, our_trainer, theirs, their_trainer = fit_both(skipping_module, tmp_path, max_epochs=2,
                                                        accumulate_grad_batches=accumulate)
    assert ours.trained == theirs.trained == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert our_trainer.global_step == their_trainer.global_step
    assert our_trainer.optimizers[0].param_groups[0]["lr"] == their_trainer.optimizers[0].param_groups[0]["lr"]
    assert same_weights(ours, theirs)
