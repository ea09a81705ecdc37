"""Rows of docs/lightning-compat.md that no other test exercises by name, each checked against what Lightning
2.6 does with the same code: the test and predict hooks in order, Trainer properties read from hooks, the
Trainer arguments benchmark / inference_mode / barebones, checkpoint keys, toggled_optimizer, utilities and
the trainer-state enums."""

from __future__ import annotations

import inspect
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ember
import ember.lightning
import lightning_programs as programs
from test_hook_order import MODULE_HOOKS, recording

L = pytest.importorskip("lightning.pytorch")
LIBRARIES = [L, ember.lightning]
EVAL_HOOKS = ["test_step", "predict_step", "on_test_model_eval", "on_test_model_train", "on_predict_model_eval"]


def regressor(pl):
    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 1)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.mse_loss(self(batch[0]), batch[1]))

        def test_step(self, batch, batch_idx):
            self.log("test_loss", F.mse_loss(self(batch[0]), batch[1]))

        def predict_step(self, batch, batch_idx):
            return self(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Regressor


def quiet(pl, root, **options):
    settings = dict(default_root_dir=root, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                    logger=False, enable_checkpointing=False)
    settings.update(options)
    return pl.Trainer(**settings)


def quietly(pl, fn):
    """Run `fn`, silencing Lightning's notes (num_workers, tips) when `pl` is Lightning; ember's warnings
    stay (and fail the test, see pyproject's filterwarnings)."""
    if pl is not L:
        return fn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_test_and_predict_call_the_hooks_in_lightnings_order(tmp_path, stage):
    import test_hook_order

    found = {}
    for pl in LIBRARIES:
        calls: list[str] = []
        hooks = [h for h in MODULE_HOOKS + EVAL_HOOKS if hasattr(regressor(pl), h)]
        previous, test_hook_order.MODULE_HOOKS = test_hook_order.MODULE_HOOKS, hooks
        try:
            callback, model = recording(calls, regressor(pl), pl.Callback)
        finally:
            test_hook_order.MODULE_HOOKS = previous
        trainer = quiet(pl, tmp_path / pl.__name__, callbacks=[callback], limit_test_batches=2,
                        limit_predict_batches=2)
        quietly(pl, lambda: getattr(trainer, stage)(model, programs.data(16, 8), verbose=False)
                          if stage == "test" else trainer.predict(model, programs.data(16, 8)))
        found[pl.__name__] = calls
    assert found[ember.lightning.__name__] == found[L.__name__]
    assert any(f"on_{stage}_batch_start" in c for c in found[L.__name__])


def test_trainer_properties_read_from_hooks_are_lightnings(tmp_path):
    """Read inside hooks of each stage, the properties hold the same values under both libraries."""
    names = ["evaluating", "predicting", "num_val_batches", "num_test_batches", "num_predict_batches",
             "num_sanity_val_batches", "local_rank", "node_rank", "num_nodes", "received_sigterm",
             "distributed_sampler_kwargs", "barebones"]
    found = {}
    for pl in LIBRARIES:
        seen: list = []

        class Reader(pl.Callback):
            def read(self, trainer, where):
                values = {n: getattr(trainer, n) for n in names}
                values["lightning_module"] = trainer.lightning_module is model
                values["early_stopping"] = type(trainer.early_stopping_callback).__name__
                values["early_stoppings"] = [type(c).__name__ for c in trainer.early_stopping_callbacks]
                values["progress_bar"] = trainer.progress_bar_callback is None
                values["loaders"] = [len(trainer.val_dataloaders or []) if where not in ("test", "predict") else 0,
                                     len(trainer.test_dataloaders or []) if where == "test" else 0,
                                     len(trainer.predict_dataloaders or []) if where == "predict" else 0]
                seen.append((where, values))

            def on_train_start(self, trainer, pl_module):
                self.read(trainer, "fit")
                seen.append(trainer.estimated_stepping_batches)

            def on_validation_epoch_start(self, trainer, pl_module):
                self.read(trainer, "sanity" if trainer.sanity_checking else "validate")

            def on_test_start(self, trainer, pl_module):
                self.read(trainer, "test")

            def on_predict_start(self, trainer, pl_module):
                self.read(trainer, "predict")

        model = regressor(pl)()
        early = pl.callbacks.EarlyStopping(monitor="val_loss", patience=3)
        trainer = quiet(pl, tmp_path / pl.__name__, callbacks=[Reader(), early], max_epochs=2,
                        num_sanity_val_steps=1, accumulate_grad_batches=2)
        loaders = [programs.data(32, 8), programs.data(16, 8)]
        quietly(pl, lambda: (trainer.fit(model, *loaders), trainer.test(model, loaders[1], verbose=False),
                                   trainer.predict(model, programs.data(16, 4))))
        found[pl.__name__] = seen
    for ours, theirs in zip(found[ember.lightning.__name__], found[L.__name__]):
        if isinstance(theirs, tuple):  # (where, {property: value})
            assert ours[0] == theirs[0]
            assert {k: v for k, v in ours[1].items() if v != theirs[1][k]} == {}, theirs
        else:
            assert ours == theirs
    assert len(found[ember.lightning.__name__]) == len(found[L.__name__])


@pytest.mark.parametrize("inference_mode", [True, False])
def test_inference_mode_and_benchmark_arguments(tmp_path, inference_mode):
    found = {}
    for pl in LIBRARIES:
        modes: list = []

        class Probe(regressor(pl)):
            def validation_step(self, batch, batch_idx):
                modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

        trainer = quiet(pl, tmp_path / pl.__name__, inference_mode=inference_mode, benchmark=False)
        quietly(pl, lambda: trainer.validate(Probe(), programs.data(8, 8), verbose=False))
        found[pl.__name__] = (modes, torch.backends.cudnn.benchmark)
    assert found[ember.lightning.__name__] == found[L.__name__]
    assert found[L.__name__][0] == [(inference_mode, False)]


def test_barebones_turns_off_what_lightning_turns_off(tmp_path):
    found = {}
    for pl in LIBRARIES:
        trainer = pl.Trainer(default_root_dir=tmp_path / pl.__name__, barebones=True, max_epochs=1,
                             accelerator="cpu")
        quietly(pl, lambda: trainer.fit(regressor(pl)(), programs.data(16, 8)))
        found[pl.__name__] = dict(loggers=trainer.loggers, checkpoint=trainer.checkpoint_callback,
                                  bar=trainer.progress_bar_callback, barebones=trainer.barebones,
                                  files=programs.files_under(tmp_path / pl.__name__, ""))
    assert found[ember.lightning.__name__] == found[L.__name__]
    assert found[L.__name__]["files"] == []


def test_checkpoint_hyperparameter_keys_are_lightnings(tmp_path):
    for ours, theirs in ((ember.lightning.LightningModule, L.LightningModule),
                         (ember.lightning.LightningDataModule, L.LightningDataModule)):
        for name in ("CHECKPOINT_HYPER_PARAMS_KEY", "CHECKPOINT_HYPER_PARAMS_NAME", "CHECKPOINT_HYPER_PARAMS_TYPE"):
            assert getattr(ours, name) == getattr(theirs, name), name

    class Net(regressor(ember.lightning)):
        def __init__(self, hidden: int = 3):
            super().__init__()
            self.save_hyperparameters()

    trainer = quiet(ember.lightning, tmp_path, max_steps=1)
    trainer.fit(Net(hidden=5), programs.data(8, 8))
    trainer.save_checkpoint(tmp_path / "net.ckpt")
    checkpoint = torch.load(tmp_path / "net.ckpt", weights_only=True)
    assert checkpoint[ember.lightning.LightningModule.CHECKPOINT_HYPER_PARAMS_KEY] == {"hidden": 5}


def test_remove_ignored_hparams_forgets_what_a_base_class_saved():
    found = {}
    for pl in LIBRARIES:
        class Base(pl.LightningModule):
            def __init__(self, width: int = 2, depth: int = 3):
                super().__init__()
                self.save_hyperparameters()

        class Data(pl.LightningDataModule):
            def __init__(self, batch_size: int = 4, root: str = "data"):
                super().__init__()
                self.save_hyperparameters()

        found[pl.__name__] = []
        for obj, name in ((Base(), "depth"), (Data(), "root")):
            obj.remove_ignored_hparams([name])
            found[pl.__name__].append((dict(obj.hparams), dict(obj.hparams_initial)))
    assert found[ember.lightning.__name__] == found[L.__name__]
    assert found[L.__name__][0][0] == {"width": 2}


def test_toggled_optimizer_is_a_context_of_toggle_and_untoggle(tmp_path):
    found = {}
    for pl in LIBRARIES:
        seen: list = []

        class Two(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

            def training_step(self, batch, batch_idx):
                opt_a, _ = self.optimizers()
                with self.toggled_optimizer(opt_a):
                    seen.append((self.a.weight.requires_grad, self.b.weight.requires_grad))
                    loss = F.mse_loss(self.a(batch[0]) + self.b(batch[0]), batch[1])
                    self.manual_backward(loss)
                    opt_a.step()
                    opt_a.zero_grad()
                seen.append((self.a.weight.requires_grad, self.b.weight.requires_grad))

            def configure_optimizers(self):
                return torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)

        trainer = quiet(pl, tmp_path / pl.__name__, max_steps=1)
        quietly(pl, lambda: trainer.fit(Two(), programs.data(8, 8)))
        found[pl.__name__] = seen
    assert found[ember.lightning.__name__] == found[L.__name__] == [(True, False), (True, True)]


def test_a_logger_subclass_of_logger_receives_what_lightnings_does(tmp_path):
    found = {}
    for pl in LIBRARIES:
        received: list = []

        class ListLogger(pl.loggers.Logger):
            name, version = "list", 0

            def log_metrics(self, metrics, step=None):
                received.append((sorted(metrics), step))

            def log_hyperparams(self, params, *args, **kwargs):
                received.append(("hparams", sorted(params)))

        class Logged(regressor(pl)):
            def training_step(self, batch, batch_idx):
                loss = super().training_step(batch, batch_idx)
                self.log("train_loss", loss)
                return loss

        trainer = quiet(pl, tmp_path / pl.__name__, logger=ListLogger(), max_epochs=1, log_every_n_steps=1)
        quietly(pl, lambda: trainer.fit(Logged(), programs.data(16, 8), programs.data(8, 8)))
        found[pl.__name__] = received
    assert found[ember.lightning.__name__] == found[L.__name__]


def test_utilities_give_lightnings_results():
    from lightning.pytorch import utilities as theirs

    from ember.lightning import utilities as ours

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)
            self.b.weight = self.a.weight

    assert ours.find_shared_parameters(Tied()) == theirs.find_shared_parameters(Tied())
    for lib in (ours, theirs):
        untied = nn.ModuleDict({"a": nn.Linear(3, 3), "b": nn.Linear(3, 3)})
        lib.set_shared_parameters(untied, [["a.weight", "b.weight"]])
        assert untied.a.weight is untied.b.weight
    net = nn.Linear(3, 2)
    net(torch.ones(4, 3)).sum().backward()
    for norm_type in (2, 1.0, "inf"):
        a, b = ours.grad_norm(net, norm_type), theirs.grad_norm(net, norm_type)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for obj in (1, lambda: 0, {"x": [1, 2]}):
        assert ours.is_picklable(obj) == theirs.is_picklable(obj)
    batch = {"x": torch.ones(2), "y": [torch.zeros(1), "text"]}
    moved = ours.move_data_to_device(batch, "cpu")
    assert pickle.dumps(moved) == pickle.dumps(theirs.move_data_to_device(batch, "cpu"))
    for size in (1, 2, 8):
        assert ours.suggested_max_num_workers(size) == theirs.suggested_max_num_workers(size)
    assert {e.name: e.value for e in ours.GradClipAlgorithmType} == \
        {e.name: e.value for e in theirs.GradClipAlgorithmType}
    assert ours.GradClipAlgorithmType("norm") == "NORM" and issubclass(ours.LightningEnum, str)


def test_rank_zero_info_and_warn_reach_logging_and_warnings(caplog):
    from ember.lightning import utilities

    with caplog.at_level("INFO", logger="ember"):
        utilities.rank_zero_info("hello from rank zero")
    assert "hello from rank zero" in caplog.text
    with pytest.warns(UserWarning, match="careful"):
        utilities.rank_zero_warn("careful")


def test_trainer_state_enums_are_lightnings(tmp_path):
    from lightning.pytorch.trainer import states as theirs

    from ember.lightning.trainer import states as ours

    for name in ("RunningStage", "TrainerFn", "TrainerStatus"):
        assert {e.name: e.value for e in getattr(ours, name)} == {e.name: e.value for e in getattr(theirs, name)}
    found = {}
    for pl, states in ((L, theirs), (ember.lightning, ours)):
        seen: list = []

        class Reader(pl.Callback):
            def on_validation_start(self, trainer, pl_module):
                seen.append((trainer.state.fn == states.TrainerFn.VALIDATING,
                             trainer.state.stage == states.RunningStage.VALIDATING,
                             trainer.state.status == states.TrainerStatus.RUNNING))

        trainer = quiet(pl, tmp_path / pl.__name__, callbacks=[Reader()])
        quietly(pl, lambda: trainer.validate(regressor(pl)(), programs.data(8, 8), verbose=False))
        found[pl.__name__] = seen + [trainer.state.status == states.TrainerStatus.FINISHED]
    assert found[ember.lightning.__name__] == found[L.__name__] == [(True, True, True), True]


def test_on_save_checkpoint_and_predict_dataloader_hooks(tmp_path):
    found = {}
    for pl in LIBRARIES:
        class Saved(regressor(pl)):
            def on_save_checkpoint(self, checkpoint):
                checkpoint["vocabulary"] = ["a", "b"]

            def predict_dataloader(self):
                return programs.data(12, 4)

        class Data(pl.LightningDataModule):
            def predict_dataloader(self):
                return programs.data(6, 3)

        model = Saved()
        trainer = quiet(pl, tmp_path / pl.__name__, max_steps=1)
        quietly(pl, lambda: trainer.fit(model, programs.data(8, 8)))
        trainer.save_checkpoint(tmp_path / pl.__name__ / "saved.ckpt")
        saved = torch.load(tmp_path / pl.__name__ / "saved.ckpt", weights_only=False)["vocabulary"]
        from_model = quietly(pl, lambda: trainer.predict(model))
        from_data = quietly(pl, lambda: trainer.predict(model, datamodule=Data()))
        found[pl.__name__] = (saved, [tuple(p.shape) for p in from_model], [tuple(p.shape) for p in from_data])
    assert found[ember.lightning.__name__] == found[L.__name__] == (["a", "b"], [(4, 1)] * 3, [(3, 1)] * 2)


def test_use_distributed_sampler_false_leaves_the_data_whole_on_every_rank(tmp_path):
    counts = {}
    for use in (True, False):
        trainer = ember.Trainer(default_root_dir=tmp_path, logger=False, use_distributed_sampler=use)
        trainer.strategy.shard = lambda: (1, 2)  # rank 1 of 2, as the DDP strategy reports it
        trainer.fit_state.data_seed = 0
        loader, count = trainer._data.train_loader(programs.data(32, 8), trainer.fit_state)
        counts[use] = (count, sum(len(b[0]) for b in loader))
    assert counts == {True: (2, 16), False: (4, 32)}


@pytest.mark.slow
def test_lightning_cli_calls_its_methods_in_lightnings_order(tmp_path, monkeypatch):
    pytest.importorskip("jsonargparse")
    from lightning.pytorch import cli as theirs

    from ember.lightning import cli as ours

    monkeypatch.chdir(tmp_path)
    methods = ["init_parser", "setup_parser", "add_default_arguments_to_parser", "add_core_arguments_to_parser",
               "add_arguments_to_parser", "link_optimizers_and_lr_schedulers", "parse_arguments",
               "before_instantiate_classes", "instantiate_classes", "instantiate_trainer",
               "after_instantiate_classes"]
    found = {}
    for lib, pl in ((theirs, L), (ours, ember.lightning)):
        calls: list[str] = []

        def recorded(name, base=lib.LightningCLI):
            if isinstance(inspect.getattr_static(base, name), staticmethod):
                def static(*args, **kwargs):
                    calls.append(name)
                    return getattr(base, name)(*args, **kwargs)
                return staticmethod(static)

            def method(self, *args, **kwargs):
                calls.append(name)
                return getattr(base, name)(self, *args, **kwargs)
            return method

        Recording = type("Recording", (lib.LightningCLI,), {name: recorded(name) for name in methods})
        cli = quietly(pl, lambda: Recording(
            regressor(pl), run=False, seed_everything_default=5, save_config_callback=None,
            auto_configure_optimizers=True, parser_class=lib.LightningArgumentParser,
            parser_kwargs={"description": "a regressor"},
            args=["--trainer.max_epochs=1", "--trainer.accelerator=cpu", "--optimizer=torch.optim.Adam",
                  "--optimizer.lr=0.01"]))
        found[lib.__name__] = dict(calls=calls, seed=cli.config["seed_everything"],
                                   optimizer=type(cli.model.configure_optimizers()).__name__,
                                   subcommands={k: sorted(v) for k, v in lib.LightningCLI.subcommands().items()},
                                   trainer_epochs=cli.trainer.max_epochs, parser=type(cli.parser).__name__)
    assert found[ours.__name__] == found[theirs.__name__]
    assert found[ours.__name__]["seed"] == 5 and found[ours.__name__]["optimizer"] == "Adam"
