"""The callbacks Lightning ships, on ember: each run on a tiny model and, where Lightning is installed, run
on the same program under Lightning and compared (steps, learning rates, weights, logged keys, checkpoint
state keys)."""

from __future__ import annotations

import csv
import io
import logging
import warnings
from datetime import timedelta

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
import ember.lightning as pl
from ember.callbacks import (BackboneFinetuning, BatchSizeFinder, DeviceStatsMonitor, GradientAccumulationScheduler,
                             LambdaCallback, LearningRateFinder, OnExceptionCheckpoint, RichModelSummary,
                             RichProgressBar, StochasticWeightAveraging, Timer, TQDMProgressBar)
from ember.checkpoint import load_checkpoint
from ember.lightning.not_supported import NotSupportedError


def lightning():
    return pytest.importorskip("lightning.pytorch")


def data(n: int = 16, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=batch_size)


def net(base, batch_norm=False, lr=0.1, scheduler=False, fail_at=None, manual=False):
    """A two-part regression model (`backbone` and `head`) on `base` (ember's or Lightning's module class)."""

    class Net(base):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            layers = [nn.Linear(3, 4)] + ([nn.BatchNorm1d(4)] if batch_norm else []) + [nn.Tanh()]
            self.backbone = nn.Sequential(*layers)
            self.head = nn.Linear(4, 1)
            self.lr = lr
            self.automatic_optimization = not manual

        def forward(self, x):
            return self.head(self.backbone(x))

        def training_step(self, batch, batch_idx):
            if fail_at is not None and self.global_step == fail_at:
                raise RuntimeError("failed on purpose")
            loss = F.mse_loss(self(batch[0]), batch[1])
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.mse_loss(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            # only what trains now: finetuning callbacks add the rest as it unfreezes
            optimizer = torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=self.lr)
            if scheduler:
                return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}
            return optimizer

    return Net()


def quiet(trainer_class, tmp_path, **kwargs):
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, accelerator="cpu", num_sanity_val_steps=0)
    options.update(kwargs)
    return trainer_class(**options)


def fit_both(tmp_path, make_callbacks, model_options=None, fit_val=False, **trainer_options):
    """Fit the same model under ember and Lightning with the callbacks `make_callbacks(module)` makes
    (module: ember.callbacks or lightning.pytorch.callbacks); returns [(trainer, model, callbacks)] x 2."""
    L = lightning()
    import lightning.pytorch.callbacks as their_callbacks

    runs = []
    for base, trainer_class, module in ((ember.Module, ember.Trainer, ember.callbacks),
                                        (L.LightningModule, L.Trainer, their_callbacks)):
        callbacks = make_callbacks(module)
        model = net(base, **(model_options or {}))
        trainer = quiet(trainer_class, tmp_path / base.__name__, callbacks=callbacks, **trainer_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, data(), data() if fit_val else None)
        runs.append((trainer, model, callbacks))
    return runs


def same_weights(a: nn.Module, b: nn.Module, exact: bool = False) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    check = torch.equal if exact else (lambda x, y: torch.allclose(x.float(), y.float(), atol=1e-6))
    return list(sa) == list(sb) and all(check(sa[k], sb[k]) for k in sa)


# --- LambdaCallback -------------------------------------------------------------------------------------


def test_lambda_callback_calls_each_given_function_with_the_hook_arguments(tmp_path):
    seen = []
    callback = LambdaCallback(on_train_epoch_end=lambda trainer, module: seen.append(("epoch", trainer.current_epoch)),
                              on_train_batch_end=lambda t, m, outputs, batch, i: seen.append(("batch", i)),
                              on_fit_end=None)
    quiet(ember.Trainer, tmp_path, max_epochs=1, limit_train_batches=2, callbacks=[callback]).fit(net(ember.Module),
                                                                                              data())
    assert seen == [("batch", 0), ("batch", 1), ("epoch", 0)]
    with pytest.raises(TypeError, match="LambdaCallback got on_epoch_end, which is not a hook; hooks are: setup"):
        LambdaCallback(on_epoch_end=print)


# --- Timer ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval, steps", [("step", 1), ("epoch", 4)])
def test_timer_stops_the_fit_as_in_lightning(tmp_path, interval, steps):
    runs = fit_both(tmp_path, lambda m: [m.Timer(duration=timedelta(microseconds=1), interval=interval, verbose=False)],
                    max_epochs=3)
    assert [trainer.global_step for trainer, _, _ in runs] == [steps, steps]
    (_, _, [ours]), (_, _, [theirs]) = runs
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["time_elapsed"]
    assert list(ours.state_dict()["time_elapsed"]) == list(theirs.state_dict()["time_elapsed"])
    assert ours.time_remaining() <= 0 and ours.time_elapsed("train") > 0 and ours.time_elapsed("test") == 0


def test_timer_measures_and_a_resumed_fit_counts_the_earlier_time(tmp_path):
    timer = Timer(duration={"days": 1})
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[timer])
    trainer.fit(net(ember.Module), data(), data())
    assert 0 < timer.time_elapsed("validate") <= timer.time_elapsed("train") < 60
    assert timer.time_remaining() == pytest.approx(86400 - timer.time_elapsed(), abs=1)
    later = Timer(duration="00:00:00:05")
    later.load_state_dict({"time_elapsed": {"train": 10.0}})
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=5, callbacks=[later])
    model = net(ember.Module)
    trainer.fit(model, data())
    assert trainer.global_step == 0  # the 5 s were used up before the checkpoint
    with pytest.raises(ValueError, match=r"Timer\(duration='1 hour'\): expected 'DD:HH:MM:SS'"):
        Timer(duration="1 hour")


# --- GradientAccumulationScheduler ---------------------------------------------------------------------


def test_gradient_accumulation_scheduler_changes_accumulation_by_epoch_as_in_lightning(tmp_path):
    runs = fit_both(tmp_path, lambda m: [m.GradientAccumulationScheduler({1: 2, 2: 4})], max_epochs=3)
    (ours, our_model, _), (theirs, their_model, _) = runs
    assert ours.global_step == theirs.global_step == 4 + 2 + 1
    assert ours.accumulate_grad_batches == theirs.accumulate_grad_batches == 4
    assert same_weights(our_model, their_model)


def test_gradient_accumulation_scheduler_refuses_manual_optimization_and_bad_schedules(tmp_path):
    with pytest.raises(RuntimeError, match="sets automatic_optimization = False. Accumulate in training_step"):
        quiet(ember.Trainer, tmp_path, max_epochs=1,
              callbacks=[GradientAccumulationScheduler({0: 2})]).fit(net(ember.Module, manual=True), data())
    with pytest.raises(IndexError, match=r"epoch -1 is not an int >= 0"):
        GradientAccumulationScheduler({-1: 2})
    with pytest.raises(TypeError, match=r"epoch 0 accumulates 0 batches; expected an int >= 1"):
        GradientAccumulationScheduler({0: 0})
    assert GradientAccumulationScheduler({3: 2}).get_accumulate_grad_batches(1) == 1


# --- OnExceptionCheckpoint ------------------------------------------------------------------------------


def test_on_exception_checkpoint_saves_when_a_fit_fails_and_a_fit_resumes_from_it(tmp_path):
    callback = OnExceptionCheckpoint(dirpath=tmp_path / "crash")
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[callback])
    with pytest.raises(RuntimeError, match="failed on purpose"):
        trainer.fit(net(ember.Module, fail_at=2), data())
    assert load_checkpoint(callback.ckpt_path)["global_step"] == 2
    resumed = quiet(ember.Trainer, tmp_path, max_epochs=1)
    resumed.fit(net(ember.Module), data(), ckpt_path=callback.ckpt_path)
    assert resumed.global_step == 4

    clean = OnExceptionCheckpoint(dirpath=tmp_path / "clean", filename="oops")
    quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[clean]).fit(net(ember.Module), data())
    assert not (tmp_path / "clean" / "oops.ckpt").exists()


def test_on_exception_checkpoint_writes_where_lightning_does(tmp_path):
    L = lightning()
    import lightning.pytorch.callbacks as theirs

    paths = []
    for base, trainer_class, module in ((ember.Module, ember.Trainer, ember.callbacks),
                                        (L.LightningModule, L.Trainer, theirs)):
        callback = module.OnExceptionCheckpoint(dirpath=tmp_path / base.__name__)
        with warnings.catch_warnings(), pytest.raises(RuntimeError):
            warnings.simplefilter("ignore")
            quiet(trainer_class, tmp_path, max_epochs=1, callbacks=[callback],
                  enable_checkpointing=True).fit(net(base, fail_at=1), data())
        paths.append(callback.ckpt_path.replace(base.__name__, "X"))
        assert torch.load(callback.ckpt_path, weights_only=False)["global_step"] == 1
    assert paths[0] == paths[1]


# --- DeviceStatsMonitor ---------------------------------------------------------------------------------


def logged_keys(path) -> set[str]:
    with open(path) as f:
        return set(next(csv.reader(f)))


def test_device_stats_monitor_logs_the_cpu_stats_under_lightnings_keys(tmp_path):
    L = lightning()
    pytest.importorskip("psutil")
    from lightning.pytorch.loggers import CSVLogger as TheirCSV

    import lightning.pytorch.callbacks as theirs

    keys = []
    for base, trainer_class, module, logger in (
            (ember.Module, ember.Trainer, ember.callbacks, ember.loggers.CSVLogger(tmp_path, name="e")),
            (L.LightningModule, L.Trainer, theirs, TheirCSV(tmp_path, name="l"))):
        trainer = quiet(trainer_class, tmp_path, max_epochs=1, limit_val_batches=1, logger=logger,
                        log_every_n_steps=1, callbacks=[module.DeviceStatsMonitor()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(net(base), data(), data())
        keys.append({k for k in logged_keys(logger.log_dir + "/metrics.csv") if k.startswith("DeviceStats")})
    assert keys[0] == keys[1]
    assert "DeviceStatsMonitor.on_train_batch_end/cpu_percent" in keys[0]


def test_device_stats_monitor_needs_a_logger(tmp_path):
    with pytest.raises(ValueError, match="DeviceStatsMonitor writes to the loggers, and this Trainer has none"):
        quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[DeviceStatsMonitor()]).fit(net(ember.Module), data())


# --- finetuning -----------------------------------------------------------------------------------------


class RecordGroups:
    """Make a callback class recording, at each epoch's start, the optimizer's learning rates and which
    backbone parameters train."""

    @staticmethod
    def of(base):
        class Record(base):
            def __init__(self):
                self.seen = []

            def on_train_epoch_end(self, trainer, pl_module):
                self.seen.append(([g["lr"] for g in trainer.optimizers[0].param_groups],
                                  [p.requires_grad for p in pl_module.backbone.parameters()]))

        return Record()


def test_backbone_finetuning_unfreezes_and_schedules_as_in_lightning(tmp_path):
    def callbacks(module):
        return [module.BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.1,
                                          lambda_func=lambda epoch: 1.5, should_align=True),
                RecordGroups.of(module.Callback)]

    runs = fit_both(tmp_path, callbacks, model_options={"batch_norm": True}, max_epochs=4)
    (_, our_model, [ours, our_record]), (_, their_model, [theirs, their_record]) = runs
    assert our_record.seen == their_record.seen
    assert our_record.seen[0][1] == [False, False, True, True]  # train_bn: the batch norm trains
    assert our_record.seen[1][1] == [True] * 4 and len(our_record.seen[1][0]) == 2
    assert same_weights(our_model, their_model)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert ours.state_dict()["internal_optimizer_metadata"] == theirs.state_dict()["internal_optimizer_metadata"]
    assert ours.state_key == theirs.state_key == "BackboneFinetuning"


def test_backbone_finetuning_resumes_with_its_parameter_groups(tmp_path):
    def run(max_epochs, ckpt_path=None):
        finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5)
        trainer = quiet(ember.Trainer, tmp_path, max_epochs=max_epochs, callbacks=[finetuning])
        model = net(ember.Module)
        trainer.fit(model, data(), ckpt_path=ckpt_path)
        return trainer, model

    first, _ = run(2)
    first.save_checkpoint(tmp_path / "two.ckpt")
    _, resumed = run(4, tmp_path / "two.ckpt")
    _, straight = run(4)
    assert same_weights(resumed, straight, exact=True)


def test_backbone_finetuning_needs_a_backbone(tmp_path):
    class NoBackbone(ember.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):  # (fit checks first that there is one)
            return self.layer(batch[0]).mean()

    with pytest.raises(ValueError, match="NoBackbone has no nn.Module attribute named backbone"):
        quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[BackboneFinetuning()]).fit(NoBackbone(), data())


# --- StochasticWeightAveraging --------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"scheduler": True}, {"batch_norm": True}])
def test_swa_averages_and_anneals_as_in_lightning(tmp_path, options):
    def callbacks(module):
        return [module.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2),
                module.LearningRateMonitor(logging_interval="epoch")]

    runs = fit_both(tmp_path, lambda m: callbacks(m)[:1] + [RecordGroups.of(m.Callback)], model_options=options,
                    max_epochs=4)
    (ours, our_model, [our_swa, our_record]), (theirs, their_model, [their_swa, their_record]) = runs
    # with batch norms Lightning trains one more epoch to recompute their statistics; ember runs that pass in
    # on_train_end (a documented difference), so its record has one epoch less
    extra = 1 if options.get("batch_norm") else 0
    assert len(their_record.seen) == len(our_record.seen) + extra == 4 + extra
    assert [lr for lrs, _ in our_record.seen for lr in lrs] == \
        pytest.approx([lr for lrs, _ in their_record.seen[:4] for lr in lrs])
    if extra:
        # Lightning's extra epoch also takes one optimizer step, with the last real step's stale gradients, on
        # top of the average; ember ends with the average itself. The recomputed statistics agree.
        ours_now, theirs_now = our_model.state_dict(), their_model.state_dict()
        for key in ("backbone.1.running_mean", "backbone.1.running_var", "backbone.1.num_batches_tracked"):
            assert torch.allclose(ours_now[key].float(), theirs_now[key].float(), atol=1e-6)
        average = our_swa.state_dict()["average_model_state"]
        assert all(torch.equal(p, average[name]) for name, p in our_model.named_parameters())
        assert (ours.current_epoch, theirs.current_epoch) == (4, 5)
    else:
        assert same_weights(our_model, their_model)
    assert our_swa.state_dict().keys() == their_swa.state_dict().keys()
    assert our_swa.state_dict()["n_averaged"] == their_swa.state_dict()["n_averaged"] == 3
    assert our_swa.state_key == their_swa.state_key


def test_swa_resumed_in_its_phase_ends_with_the_same_weights(tmp_path):
    def run(max_epochs, ckpt_path=None, save_at=None):
        swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
        callbacks = [swa]
        if save_at is not None:
            callbacks.append(LambdaCallback(on_train_epoch_end=lambda t, m: t.current_epoch == save_at and
                                            t.save_checkpoint(tmp_path / "mid.ckpt")))
        trainer = quiet(ember.Trainer, tmp_path, max_epochs=max_epochs, callbacks=callbacks)
        model = net(ember.Module, scheduler=True, batch_norm=True)
        trainer.fit(model, data(), ckpt_path=ckpt_path)
        return model

    straight = run(5, save_at=2)
    resumed = run(5, ckpt_path=tmp_path / "mid.ckpt")
    assert same_weights(resumed, straight, exact=True)


def test_swa_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"swa_lrs=0\): expected a positive float"):
        StochasticWeightAveraging(swa_lrs=0)
    with pytest.raises(ValueError, match=r"swa_epoch_start=0\): expected an int >= 1"):
        StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=0)
    with pytest.raises(ValueError, match="is a fraction of max_epochs, and the Trainer has none"):
        quiet(ember.Trainer, tmp_path, max_epochs=-1, max_steps=2,
              callbacks=[StochasticWeightAveraging(swa_lrs=0.1)]).fit(net(ember.Module), data())


# --- the tuner as callbacks -----------------------------------------------------------------------------


def test_learning_rate_finder_sets_the_suggestion_before_training(tmp_path):
    finder = LearningRateFinder(num_training_steps=20, min_lr=1e-4, max_lr=1.0, early_stop_threshold=None)
    used = []
    watch = LambdaCallback(on_train_start=lambda t, m: used.append(t.optimizers[0].param_groups[0]["lr"]))
    model = net(ember.Module, lr=123.0)
    quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[finder, watch]).fit(model, data(64))
    suggestion = finder.optimal_lr.suggestion()
    assert suggestion is not None and 1e-4 <= suggestion <= 1.0
    assert model.lr == suggestion and used == [suggestion]


class Sized(ember.Module):
    def __init__(self):
        super().__init__()
        self.batch_size = 2
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return data(32, batch_size=self.batch_size)


@pytest.mark.parametrize("mode, margin, max_val, expected", [("power", 0.05, 8192, 32), ("binsearch", 0.25, 8192, 24),
                                                             ("power", 0.05, 8, 8)])
def test_batch_size_finder_sets_the_size_the_fit_then_uses(tmp_path, mode, margin, max_val, expected):
    finder = BatchSizeFinder(mode=mode, margin=margin, max_val=max_val)
    model = Sized()
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=1, callbacks=[finder])
    trainer.fit(model)
    assert finder.optimal_batch_size == model.batch_size == expected
    assert trainer.num_training_batches == -(-32 // expected)  # the loader was built with it


# --- progress bars and summaries ------------------------------------------------------------------------


def test_progress_bar_api_reads_as_lightnings(tmp_path):
    L = lightning()
    import lightning.pytorch.callbacks as theirs
    from lightning.pytorch.loggers import CSVLogger as TheirCSV

    readings = []
    for base, trainer_class, module, logger in (
            (ember.Module, ember.Trainer, ember.callbacks, ember.loggers.CSVLogger(tmp_path, name="e")),
            (L.LightningModule, L.Trainer, theirs, TheirCSV(tmp_path, name="l"))):
        bar = module.TQDMProgressBar(refresh_rate=2)

        def read(trainer, pl_module, bar=bar):
            metrics = bar.get_metrics(trainer, pl_module)
            readings.append((bar.total_train_batches, bar.total_val_batches, bar.refresh_rate, bar.is_enabled,
                             sorted(metrics), metrics["v_num"]))

        trainer = quiet(trainer_class, tmp_path, max_epochs=1, logger=logger, enable_progress_bar=True,
                        limit_val_batches=2, callbacks=[bar, module.LambdaCallback(on_train_epoch_end=read)])
        with warnings.catch_warnings(), io.StringIO() as sink:
            warnings.simplefilter("ignore")
            bar._stream = sink  # ember's bar; Lightning's tqdm writes to stderr
            trainer.fit(net(base), data(), data())
    assert readings[0] == readings[1] == (4, 2, 2, True, ["train_loss", "v_num"], 0)


def test_tqdm_progress_bar_redraws_every_refresh_rate_batches_and_can_be_disabled(tmp_path):
    sink = io.StringIO()
    bar = TQDMProgressBar(refresh_rate=2, stream=sink)
    quiet(ember.Trainer, tmp_path, max_epochs=1, enable_progress_bar=True, callbacks=[bar]).fit(net(ember.Module),
                                                                                             data())
    lines = sink.getvalue().splitlines()
    # after batches 2 and 4, and the epoch's closing line
    assert [line.split("  ")[1].split(" ")[0] for line in lines] == ["2/4", "4/4", "4/4"]
    assert "train_loss=" in lines[-1]
    off = io.StringIO()
    quiet(ember.Trainer, tmp_path, max_epochs=1, enable_progress_bar=True,
          callbacks=[TQDMProgressBar(refresh_rate=0, stream=off)]).fit(net(ember.Module), data())
    assert off.getvalue() == ""


def test_a_tqdm_bar_customizing_tqdm_is_refused():
    with pytest.raises(NotSupportedError, match=r"MyBar.init_train_tqdm .* is not supported by ember.*"
                                                r"override get_metrics\(\).*TQDMProgressBar.init_\*_tqdm"):
        class MyBar(TQDMProgressBar):
            def init_train_tqdm(self):
                return None


def test_rich_progress_bar_and_summary_draw_with_rich(tmp_path):
    pytest.importorskip("rich")
    out = io.StringIO()
    console = {"file": out, "force_terminal": False, "width": 120}
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=2, enable_progress_bar=True, enable_model_summary=True,
                    callbacks=[RichProgressBar(leave=True, console_kwargs=console),
                               RichModelSummary(console_kwargs=console)])
    trainer.fit(net(ember.Module), data(), data())
    text = out.getvalue()
    assert "backbone" in text and "Sequential" in text and "trainable params" in text
    assert "Epoch 0/1" in text and "Epoch 1/1" in text and "4/4" in text and "train_loss:" in text


def test_rich_callbacks_fall_back_to_the_plain_ones_without_rich(tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_rich(name, *args, **kwargs):
        if name == "rich" or name.startswith("rich."):
            raise ImportError("No module named 'rich'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rich)
    sink = io.StringIO()
    bar = RichProgressBar(stream=sink)
    with caplog.at_level(logging.INFO, logger="ember"):
        quiet(ember.Trainer, tmp_path, max_epochs=1, enable_progress_bar=True, enable_model_summary=True,
              callbacks=[bar, RichModelSummary()]).fit(net(ember.Module), data())
    assert "pip install 'ember[rich]'" in caplog.text and "Params" in caplog.text
    assert "Epoch 0" in sink.getvalue()


# --- state moves between the two ------------------------------------------------------------------------


def test_stateful_callbacks_load_each_others_checkpoint_state(tmp_path):
    L = lightning()
    import lightning.pytorch.callbacks as theirs

    def make(module):
        return [module.Timer(duration={"hours": 1}),
                module.BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5),
                module.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2)]

    runs = fit_both(tmp_path, make, max_epochs=3)
    (our_trainer, _, ours), (their_trainer, _, theirs_done) = runs
    our_trainer.save_checkpoint(tmp_path / "ours.ckpt")
    their_trainer.save_checkpoint(tmp_path / "theirs.ckpt")
    our_states = load_checkpoint(tmp_path / "ours.ckpt")["callbacks"]
    their_states = torch.load(tmp_path / "theirs.ckpt", weights_only=False)["callbacks"]
    assert set(our_states) == set(their_states) == {"Timer", "BackboneFinetuning", "StochasticWeightAveraging"}

    for source, target_module in ((their_states, ember.callbacks), (our_states, theirs)):
        fresh = {c.state_key: c for c in make(target_module)}
        for key, state in source.items():
            fresh[key].load_state_dict(state)
        assert fresh["Timer"].time_elapsed() == pytest.approx(source["Timer"]["time_elapsed"]["train"])
        assert fresh["BackboneFinetuning"].previous_backbone_lr == source["BackboneFinetuning"]["previous_backbone_lr"]
    assert our_states["BackboneFinetuning"]["internal_optimizer_metadata"] == \
        their_states["BackboneFinetuning"]["internal_optimizer_metadata"]
    swa = "StochasticWeightAveraging"
    assert our_states[swa]["n_averaged"] == their_states[swa]["n_averaged"]
    assert our_states["StochasticWeightAveraging"]["scheduler_state"].keys() == \
        their_states["StochasticWeightAveraging"]["scheduler_state"].keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA memory stats need a GPU")
def test_device_stats_monitor_logs_cuda_memory_on_a_gpu(tmp_path):
    logger = ember.loggers.CSVLogger(tmp_path)
    trainer = quiet(ember.Trainer, tmp_path, max_epochs=1, accelerator="gpu", devices=1, logger=logger,
                    log_every_n_steps=1, callbacks=[DeviceStatsMonitor(cpu_stats=False)])
    trainer.fit(net(ember.Module), data())
    keys = logged_keys(logger.log_dir + "/metrics.csv")
    assert "DeviceStatsMonitor.on_train_batch_end/allocated_bytes.all.current" in keys
    assert not any(k.endswith("cpu_percent") for k in keys)


def test_gradient_accumulation_scheduler_resumes_mid_epoch_to_the_same_weights(tmp_path, caplog):
    def run(ckpt_path=None, save_at=None):
        callbacks = [GradientAccumulationScheduler({0: 1, 1: 2})]
        if save_at is not None:
            callbacks.append(LambdaCallback(on_train_batch_end=lambda t, m, o, b, i: (t.current_epoch, i) == save_at
                                            and t.save_checkpoint(tmp_path / "mid.ckpt")))
        trainer = quiet(ember.Trainer, tmp_path, max_epochs=3, callbacks=callbacks)
        model = net(ember.Module)
        trainer.fit(model, data(), ckpt_path=ckpt_path)
        return model

    straight = run(save_at=(1, 1))
    with caplog.at_level(logging.WARNING, logger="ember"):
        resumed = run(ckpt_path=tmp_path / "mid.ckpt")
    assert same_weights(resumed, straight, exact=True)
    assert "accumulate_grad_batches" not in caplog.text
