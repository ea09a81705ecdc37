"""Tuner: lr_find on a problem whose good learning rate is known, scale_batch_size against an artificial
memory limit, and both leaving the model, the optimizer, the Trainer, the RNG and the disk as they were."""

from __future__ import annotations

import copy
import math
import random
import tempfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
import ember.lightning as pl
from ember.tuner import LRFinder, Tuner
from ember.tuner.batch_size import is_out_of_memory, next_size
from ember.tuner.lr_find import lr_schedule

FEATURES = 8


def whitened_regression(n: int = 256, seed: int = 0) -> TensorDataset:
    """y = x @ w* with x^T x / n = I: the MSE is |w - w*|^2, whose Hessian is 2I, so SGD on the full batch
    with lr = 0.5 lands on w* in one step, converges for lr < 1 and diverges above."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, FEATURES, generator=generator))
    x = q * math.sqrt(n)
    w = torch.randn(FEATURES, 1, generator=generator)
    return TensorDataset(x, x @ w)


class LinearRegression(ember.Module):
    def __init__(self, lr: float = 1e-3, momentum: float = 0.0):
        super().__init__()
        self.lr, self.momentum = lr, momentum
        self.net = nn.Linear(FEATURES, 1, bias=False)
        self.applied_lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def on_before_optimizer_step(self, optimizer):  # after the sweep's callback set this step's rate
        self.applied_lrs.append(optimizer.param_groups[0]["lr"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def full_batch() -> DataLoader:
    return DataLoader(whitened_regression(), batch_size=256)


def quiet(tmp_path, **kwargs) -> ember.Trainer:
    options = dict(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0)
    options.update(kwargs)
    return ember.Trainer(**options)


def files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def one_step_loss(lr: float) -> tuple[float, float]:
    torch.manual_seed(0)
    model = nn.Linear(FEATURES, 1, bias=False)
    x, y = whitened_regression().tensors
    before = F.mse_loss(model(x), y)
    before.backward()
    with torch.no_grad():
        model.weight -= lr * model.weight.grad
    return before.item(), F.mse_loss(model(x), y).item()


def test_the_known_good_learning_rate_of_the_regression():
    before, after = one_step_loss(0.5)
    assert after < 1e-10 * before  # lr = 0.5 solves it in one step
    before, after = one_step_loss(1.0)
    assert after == pytest.approx(before, rel=1e-5)  # lr = 1 bounces between w0 and 2w* - w0
    before, after = one_step_loss(0.05)
    assert 0.5 * before < after < before  # lr = 0.05 is slow


def test_lr_find_suggests_within_a_factor_of_ten_and_leaves_everything_as_it_was(tmp_path, caplog):
    torch.manual_seed(0)
    model = LinearRegression(lr=0.01, momentum=0.9)
    trainer = quiet(tmp_path, max_epochs=2)
    trainer.fit(model, full_batch())  # the trainer now holds an optimizer with momentum buffers
    model.momentum = 0.0  # the known good lr is plain SGD's
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = trainer.optimizers[0]
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    counters = (trainer.global_step, trainer.current_epoch, trainer.state)
    callback_states = {c.state_key: copy.deepcopy(c.state_dict()) for c in trainer.callbacks}
    files = files_under(tmp_path)
    rng = (torch.get_rng_state(), random.getstate())

    finder = Tuner(trainer).lr_find(model, full_batch())

    suggestion = finder.suggestion()
    assert 0.5 / 10 <= suggestion <= 0.5 * 10
    assert model.lr == suggestion
    assert f"lr_find: learning rate set to {suggestion:.3g} (LinearRegression.lr)." in caplog.messages
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert trainer.optimizers[0] is optimizer and optimizer.state[model.net.weight]["momentum_buffer"] is not None
    assert optimizer.param_groups[0]["params"][0] is model.net.weight  # the same Parameter objects
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert _equal_states(optimizer.state_dict(), optimizer_state)
    assert (trainer.global_step, trainer.current_epoch, trainer.state) == counters
    assert {c.state_key: c.state_dict() for c in trainer.callbacks} == callback_states
    assert model.trainer is trainer
    assert files_under(tmp_path) == files
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]


def _equal_states(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal_states(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal_states(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("mode", ["exponential", "linear"])
def test_the_sweep_applies_the_schedule_step_by_step(tmp_path, mode):
    model = LinearRegression()
    finder = Tuner(quiet(tmp_path)).lr_find(model, full_batch(), min_lr=1e-3, max_lr=0.1, num_training=12,
                                            mode=mode, early_stop_threshold=None, update_attr=False)
    expected = lr_schedule(1e-3, 0.1, 12, mode)
    assert finder.results["lr"] == expected == model.applied_lrs
    assert expected[0] == 1e-3 and expected[-1] == pytest.approx(0.1, rel=1e-12)
    if mode == "linear":
        assert [b - a for a, b in zip(expected, expected[1:])] == pytest.approx([0.009] * 11)
    else:
        assert [b / a for a, b in zip(expected, expected[1:])] == pytest.approx([100 ** (1 / 11)] * 11)
    assert len(finder.results["loss"]) == len(finder.raw_losses) == 12
    assert model.lr == 1e-3  # update_attr=False


def test_the_sweep_stops_when_the_loss_diverges(tmp_path):
    finder = Tuner(quiet(tmp_path)).lr_find(LinearRegression(), full_batch(), min_lr=1e-3, max_lr=100.0,
                                            num_training=100, update_attr=False)
    losses = finder.results["loss"]
    assert 10 < len(losses) < 100
    assert finder.results["lr"][-1] > 1.0  # diverging needs lr above 1 here
    assert losses[-1] > 4.0 * min(losses[:-1])
    assert all(loss <= 4.0 * min(losses[: i + 1]) for i, loss in enumerate(losses[:-1]))


def test_the_smoothed_loss_is_a_bias_corrected_moving_average(tmp_path):
    finder = Tuner(quiet(tmp_path)).lr_find(LinearRegression(), full_batch(), num_training=5, update_attr=False)
    average = 0.0
    for k, (raw, smoothed) in enumerate(zip(finder.raw_losses, finder.results["loss"])):
        average = 0.98 * average + 0.02 * raw
        assert smoothed == pytest.approx(average / (1 - 0.98 ** (k + 1)), rel=1e-12)
    assert finder.results["loss"][0] == finder.raw_losses[0]


def test_suggestion_is_the_steepest_descent_of_the_smoothed_loss():
    lrs = [10.0 ** (i - 8) for i in range(8)]
    losses = [5.0, 4.9, 4.5, 3.0, 2.9, 2.8, math.nan, 9.0]
    finder = LRFinder("exponential", lrs[0], lrs[-1], 8, lrs, losses, losses)
    # slopes over indices 0..6 without the nan: index 2 -> (3.0 - 4.9) / 2 and index 3 -> (2.9 - 4.5) / 2
    assert finder.suggestion(skip_begin=0, skip_end=1) == lrs[2]
    assert finder.optimal_index == 2
    assert finder.suggestion(skip_begin=3, skip_end=1) == lrs[3]  # points 3, 4, 5: 3 -> 4 falls most
    with pytest.warns(UserWarning, match="1 finite losses .* too few for a suggestion"):
        assert finder.suggestion(skip_begin=5, skip_end=1) is None
    assert finder.optimal_index is None


class HparamsRegression(LinearRegression):
    def __init__(self, learning_rate: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        del self.lr
        self.trained = 0

    def training_step(self, batch, batch_idx):
        self.trained += 1
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


def test_update_attr_finds_hparams_learning_rate_or_attr_name(tmp_path):
    model = HparamsRegression()
    finder = Tuner(quiet(tmp_path)).lr_find(model, full_batch(), num_training=30)
    assert model.hparams.learning_rate == finder.suggestion()
    model.my_lr = 0.0
    finder = Tuner(quiet(tmp_path)).lr_find(model, full_batch(), num_training=30, attr_name="my_lr")
    assert model.my_lr == finder.suggestion()


def test_update_attr_without_a_learning_rate_fails_before_training(tmp_path):
    model = HparamsRegression()
    model._hparams.clear()
    with pytest.raises(AttributeError, match=r"looked at HparamsRegression.lr, HparamsRegression.hparams\['lr'\]"):
        Tuner(quiet(tmp_path)).lr_find(model, full_batch())
    assert model.trained == 0
    with pytest.raises(AttributeError, match="HparamsRegression.nope"):
        Tuner(quiet(tmp_path)).lr_find(model, full_batch(), attr_name="nope")


def test_lr_find_checks_its_arguments(tmp_path):
    tuner = Tuner(quiet(tmp_path))
    with pytest.raises(ValueError, match="only method='fit'"):
        tuner.lr_find(LinearRegression(), full_batch(), method="validate")
    with pytest.raises(ValueError, match="mode='cosine'"):
        tuner.lr_find(LinearRegression(), full_batch(), mode="cosine")
    with pytest.raises(ValueError, match="0 < min_lr < max_lr"):
        tuner.lr_find(LinearRegression(), full_batch(), min_lr=1.0, max_lr=0.1)


def test_lr_find_restores_the_dtype_a_trial_precision_changed(tmp_path):
    torch.manual_seed(0)
    model = LinearRegression()
    weight = model.net.weight.detach().clone()
    Tuner(quiet(tmp_path, precision="64-true")).lr_find(model, full_batch(), num_training=20)
    assert model.net.weight.dtype == torch.float32
    assert torch.equal(model.net.weight, weight)


def test_lr_find_plot_returns_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    finder = Tuner(quiet(tmp_path)).lr_find(LinearRegression(), full_batch(), update_attr=False)
    figure = finder.plot(suggest=True)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    line, marker = ax.get_lines()
    assert list(line.get_xdata()) == finder.results["lr"]
    assert list(marker.get_xdata()) == [finder.suggestion()]


# --- scale_batch_size -------------------------------------------------------------------------------


class Samples(ember.DataModule):
    def __init__(self, n: int = 200):
        super().__init__()
        self.batch_size = 1
        generator = torch.Generator().manual_seed(0)
        self.dataset = TensorDataset(torch.randn(n, 4, generator=generator), torch.randn(n, 1, generator=generator))

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)


class MemoryLimited(ember.Module):
    """Runs out of "memory" for batches larger than `limit`, as torch reports it on a GPU."""

    def __init__(self, limit: int = 37, error: str = "type"):
        super().__init__()
        self.limit, self.error = limit, error
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            if self.error == "type":
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} MiB.")
            raise RuntimeError(f"CUDA error: out of memory (batch {len(x)})")
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_binsearch_finds_the_largest_size_that_fits(tmp_path, caplog):
    torch.manual_seed(0)
    model, data = MemoryLimited(limit=37), Samples()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(False)
    rng = torch.get_rng_state()

    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, mode="binsearch") == 37

    assert data.batch_size == 37
    assert sorted(set(model.sizes)) == [2, 4, 8, 16, 32, 36, 37, 38, 40, 48, 64]
    assert ("scale_batch_size: batch_size=37 (the largest that fit; 38 ran out of memory); set as "
            "Samples.batch_size.") in caplog.messages
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert not model.training and model._trainer is None and data.trainer is None
    assert torch.equal(torch.get_rng_state(), rng)


def test_power_doubles_until_out_of_memory(tmp_path):
    model, data = MemoryLimited(limit=37), Samples()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, mode="power") == 32
    assert sorted(set(model.sizes)) == [2, 4, 8, 16, 32, 64]
    assert data.batch_size == 32


def test_out_of_memory_is_also_recognized_by_its_message(tmp_path):
    model, data = MemoryLimited(limit=20, error="message"), Samples()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, mode="binsearch") == 20


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("anything"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if "
                                         "you passed in a non-contiguous input."))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                         "allocate memory: you tried to allocate 1000000 bytes."))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x1)"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_next_size():
    assert next_size("power", 2, None, None) == 4
    assert next_size("power", 32, None, 50) == 50
    assert next_size("power", 50, None, 50) is None
    assert next_size("power", 32, 64, None) is None
    assert next_size("binsearch", 32, 64, None) == 48
    assert next_size("binsearch", 37, 38, None) is None
    assert next_size("binsearch", 0, 64, None) == 32  # the first size already failed: shrink
    assert next_size("power", 0, 1, None) is None


def test_the_search_stops_at_the_dataset_size(tmp_path, caplog):
    model, data = MemoryLimited(limit=1000), Samples(n=50)
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, mode="binsearch") == 50
    assert sorted(set(model.sizes)) == [2, 4, 8, 16, 18, 32, 50]  # 18: the last batch of an epoch at 32
    assert "(the dataset has 50 samples)" in caplog.text


def test_the_search_stops_at_max_trials(tmp_path, caplog):
    model, data = MemoryLimited(limit=1000), Samples()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, max_trials=3) == 8
    assert "(max_trials=3 reached)" in caplog.text


def test_a_first_size_that_does_not_fit_shrinks(tmp_path):
    model, data = MemoryLimited(limit=5), Samples()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, mode="binsearch", init_val=64) == 5


def test_nothing_fits(tmp_path):
    model, data = MemoryLimited(limit=0), Samples()
    with pytest.raises(RuntimeError, match="no batch size fit in memory; the smallest tried, 1, failed with "
                                           "OutOfMemoryError: CUDA out of memory"):
        Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, init_val=4)
    assert data.batch_size == 1


def test_other_errors_propagate_and_restore_the_batch_size(tmp_path):
    class Broken(MemoryLimited):
        def forward(self, x):
            if len(x) > 8:
                raise ValueError("a bug, not memory")
            return super().forward(x)

    torch.manual_seed(0)
    model, data = Broken(), Samples()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="a bug, not memory"):
        Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data)
    assert data.batch_size == 1
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_validate_method_scales_the_validation_loader(tmp_path):
    class ValidationLimited(MemoryLimited):
        def forward(self, x):
            self.sizes.append(len(x))
            if len(x) > self.limit and not self.training:
                raise torch.OutOfMemoryError("CUDA out of memory.")
            return self.net(x)

    model, data = ValidationLimited(limit=37), Samples()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, datamodule=data, method="validate",
                                                   mode="binsearch") == 37


class BatchSizeInHparams(MemoryLimited):
    def __init__(self, batch_size: int = 4, limit: int = 37):
        super().__init__(limit=limit)
        self.save_hyperparameters()
        self.dataset = Samples().dataset

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.hparams.batch_size)


def test_the_batch_size_may_live_in_the_model_hparams(tmp_path):
    model = BatchSizeInHparams()
    assert Tuner(quiet(tmp_path)).scale_batch_size(model, mode="binsearch", init_val=16) == 37
    assert model.hparams.batch_size == 37


def test_scale_batch_size_checks_its_arguments(tmp_path):
    tuner = Tuner(quiet(tmp_path))
    loader = DataLoader(Samples().dataset, batch_size=4)
    with pytest.raises(ValueError, match="cannot change the batch size of DataLoaders passed to it"):
        tuner.scale_batch_size(BatchSizeInHparams(), train_dataloaders=loader)
    with pytest.raises(AttributeError, match=r"found no 'batch_size' to scale \(looked at MemoryLimited.batch_size, "
                                             r"MemoryLimited.hparams\['batch_size'\], Samples.batch_size"):
        data = Samples()
        del data.batch_size
        tuner.scale_batch_size(MemoryLimited(), datamodule=data)
    with pytest.raises(ValueError, match="mode='linear'"):
        tuner.scale_batch_size(MemoryLimited(), datamodule=Samples(), mode="linear")


def test_trials_write_nothing_and_leave_the_trainer_alone(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    run = tmp_path / "run"

    class WithCheckpoints(MemoryLimited):
        def configure_callbacks(self):
            return [ember.callbacks.ModelCheckpoint(dirpath=run / "model_ckpts")]

    trainer = ember.Trainer(default_root_dir=run, enable_progress_bar=False, max_epochs=1)
    model, data = WithCheckpoints(), Samples()
    before = copy.copy(trainer.__dict__)
    Tuner(trainer).scale_batch_size(model, datamodule=data, max_trials=3)
    Tuner(trainer).lr_find(model, datamodule=data, num_training=5, update_attr=False)
    assert not run.exists()
    assert list(scratch.iterdir()) == []  # the temporary checkpoint is gone
    assert trainer.__dict__ == before
    assert "configure_callbacks" not in model.__dict__

    trainer.fit(model, datamodule=data)  # the real fit still gets the model's callbacks
    assert (run / "model_ckpts").is_dir()


def test_the_real_fit_after_tuning_is_the_fit_without_it(tmp_path):
    def fit(tune: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(7)
        random.seed(7)
        model, data = MemoryLimited(limit=1000), Samples(n=64)  # dropout and shuffling draw random numbers
        data.batch_size = 8
        trainer = quiet(tmp_path / str(tune), max_epochs=2, logger=False, enable_checkpointing=False)
        if tune:
            Tuner(trainer).lr_find(model, datamodule=data, num_training=10, update_attr=False)
            data.batch_size = 8
        trainer.fit(model, datamodule=data)
        return model.state_dict()

    tuned, untuned = fit(True), fit(False)
    assert all(torch.equal(tuned[k], untuned[k]) for k in untuned)


class Writeup(pl.LightningModule):
    """The shape of the Lightning 1.x write-up (seeds/004): hparams from args, the optimizer kept on self."""

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Linear(4, 1)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("dev_loss", F.mse_loss(self(x), y), prog_bar=True)

    def configure_optimizers(self):
        self.opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return self.opt


@pytest.mark.skipif(torch.cuda.is_available(), reason="the write-up's init_val is 0 only without a GPU")
def test_the_lightning_1x_writeup_call(tmp_path, caplog):
    with pytest.warns(pl.LightningDeprecationWarning):
        trainer = pl.Trainer(gpus=-1, accelerator="dp", precision=32, default_root_dir=tmp_path / "log",
                             max_epochs=10, enable_progress_bar=False, callbacks=[
                                 pl.callbacks.EarlyStopping(monitor="dev_loss", patience=2),
                                 pl.callbacks.ModelCheckpoint(monitor="dev_loss", filename="{epoch}-{dev_loss:.2f}",
                                                              save_last=True)])
    model, dm = Writeup(), Samples(n=20)

    tuner = pl.tuner.tuning.Tuner(copy.deepcopy(trainer))
    new_batch_size = tuner.scale_batch_size(model, datamodule=dm, init_val=torch.cuda.device_count())
    del tuner

    assert new_batch_size == 20 == dm.batch_size  # on the CPU only the dataset size bounds it
    assert "scale_batch_size(init_val=0): a batch size is at least 1; starting at 1." in caplog.messages
    assert not (tmp_path / "log").exists()
    model.hparams.batch_size = new_batch_size
    trainer.fit(model, datamodule=dm)
    assert trainer.checkpoint_callback.last_model_path
