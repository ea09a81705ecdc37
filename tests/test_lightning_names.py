"""Lightning's module paths and utility names on ember: `trainer.state`, `rank_zero_only`, `grad_norm`, the
parameter-tying helpers, `isolate_rng`, and the error a name ember lacks raises. Where Lightning is
installed the same program runs under both and the results are compared."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
from torch import nn

import ember
import ember.lightning as pl
from ember.lightning.not_supported import NotSupportedError
from ember.lightning.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from ember.lightning.utilities import (find_shared_parameters, grad_norm, rank_zero_only, set_shared_parameters,
                                       suggested_max_num_workers)
from ember.lightning.utilities.seed import isolate_rng

from conftest import loader


def lightning():
    return pytest.importorskip("lightning.pytorch")


# --- trainer.state ------------------------------------------------------------------------------------


def recorder(base):
    class Record(base):
        def __init__(self):
            self.seen = []

        def _note(self, trainer, hook):
            state = trainer.state
            self.seen.append((hook, state.fn and state.fn.value, state.stage and state.stage.value,
                              state.status.value, trainer.validating, trainer.evaluating))

        def setup(self, trainer, pl_module, stage): self._note(trainer, "setup")
        def on_sanity_check_start(self, trainer, pl_module): self._note(trainer, "on_sanity_check_start")
        def on_train_epoch_start(self, trainer, pl_module): self._note(trainer, "on_train_epoch_start")
        def on_validation_start(self, trainer, pl_module): self._note(trainer, "on_validation_start")
        def on_validation_batch_end(self, trainer, pl_module, *args): self._note(trainer, "on_validation_batch_end")
        def on_train_epoch_end(self, trainer, pl_module): self._note(trainer, "on_train_epoch_end")
        def on_test_start(self, trainer, pl_module): self._note(trainer, "on_test_start")
        def on_predict_start(self, trainer, pl_module): self._note(trainer, "on_predict_start")
        def teardown(self, trainer, pl_module, stage): self._note(trainer, "teardown")

    return Record()


def tiny(base, fail=False):
    class Tiny(base):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def forward(self, x):
            return self.layer(x)

        def training_step(self, batch, batch_idx):
            if fail:
                raise ValueError("boom")
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v", self.layer(batch[0]).mean())

        def test_step(self, batch, batch_idx):
            self.log("t", self.layer(batch[0]).mean())

        def predict_step(self, batch, batch_idx):
            return self.layer(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def states_of_a_run(L, module_base, trainer_class, tmp_path):
    record = recorder(L.Callback)
    trainer = trainer_class(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[record], default_root_dir=tmp_path,
                            accelerator="cpu")
    def summary(s):
        return s.status.value, s.fn and s.fn.value, s.stage, s.finished, s.stopped

    ends = [summary(trainer.state)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(tiny(module_base), loader(), loader())
        ends.append(summary(trainer.state))
        trainer.test(tiny(module_base), loader(), verbose=False)
        trainer.predict(tiny(module_base), loader())
    ends.append(summary(trainer.state))
    return record.seen, ends


def test_trainer_state_follows_the_run_as_in_lightning(tmp_path):
    L = lightning()
    ours = states_of_a_run(pl, pl.LightningModule, pl.Trainer, tmp_path / "e")
    theirs = states_of_a_run(L, L.LightningModule, L.Trainer, tmp_path / "l")
    assert ours == theirs
    seen = {hook: tuple(rest) for hook, *rest in ours[0]}
    assert seen["on_sanity_check_start"] == ("fit", "sanity_check", "running", False, True)
    assert seen["on_validation_batch_end"] == ("fit", "validate", "running", True, True)


def test_trainer_state_after_a_failed_run_is_interrupted_as_in_lightning(tmp_path):
    L = lightning()
    statuses = []
    for module_base, trainer_class in ((pl.LightningModule, pl.Trainer), (L.LightningModule, L.Trainer)):
        trainer = trainer_class(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
        with warnings.catch_warnings(), pytest.raises(ValueError, match="boom"):
            warnings.simplefilter("ignore")
            trainer.fit(tiny(module_base, fail=True), loader())
        statuses.append((trainer.state.status, trainer.state.fn, trainer.state.stopped, trainer.state.finished))
    assert statuses[0] == statuses[1] == (TrainerStatus.INTERRUPTED, TrainerFn.FITTING, True, False)


def test_trainer_state_equals_the_running_entry_point_name_only_while_it_runs(tmp_path):
    inside = []

    class Look(ember.Callback):
        def on_train_start(self, trainer, pl_module):
            inside.append((trainer.state == "fit", trainer.state != "test", f"{trainer.state}"))

    trainer = ember.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[Look()], default_root_dir=tmp_path)
    assert trainer.state != "fit" and trainer.state.status == "initializing"
    try:
        # a fit started inside the caller's `except` block still finishes as FINISHED
        raise KeyError("the caller's own exception")
    except KeyError:
        trainer.fit(tiny(ember.Module), loader())
    assert inside == [(True, True, "fit")]
    assert trainer.state != "fit" and trainer.state.fn == "fit" and trainer.state.finished


def test_state_enums_are_strings_that_compare_without_case():
    assert TrainerFn.FITTING == "fit" == TrainerFn.FITTING and TrainerFn.FITTING == "FIT"
    assert isinstance(RunningStage.TRAINING, str) and {TrainerFn.TESTING: 1}["test"] == 1
    assert RunningStage.SANITY_CHECKING.evaluating and not RunningStage.TRAINING.evaluating
    assert [s.dataloader_prefix for s in RunningStage] == ["train", "val", "val", "test", "predict"]
    assert TrainerFn.from_str("FITTING") is TrainerFn.FITTING
    assert TrainerState() == TrainerState(TrainerStatus.INITIALIZING, None, None)
    with pytest.raises(ValueError, match=r"TrainerFn.from_str\('training'\): expected one of"):
        TrainerFn.from_str("training")


def test_state_enums_match_lightnings():
    lightning()
    from lightning.pytorch.trainer import states as theirs

    for name in ("TrainerFn", "TrainerStatus", "RunningStage"):
        assert [(m.name, m.value) for m in getattr(theirs, name)] == \
            [(m.name, m.value) for m in getattr(pl.trainer.states, name)]
        assert [str(m) for m in getattr(theirs, name)] == [str(m) for m in getattr(pl.trainer.states, name)]


# --- utilities ----------------------------------------------------------------------------------------


def test_rank_zero_only_runs_on_rank_zero_and_reads_the_rank_when_asked(monkeypatch):
    calls = []

    @rank_zero_only
    def note(x):
        calls.append(x)
        return x

    assert rank_zero_only.rank == 0 and note(1) == 1
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_zero_only.rank == 3 and note(2) is None
    rank_zero_only.rank = 0  # set by hand, as a strategy does: wins over the environment
    try:
        assert note(3) == 3 and rank_zero_only(lambda: "x", default="off")() == "x"
        rank_zero_only.rank = 1
        assert rank_zero_only(lambda: "x", "off")() == "off"
    finally:
        rank_zero_only.rank = None
    assert calls == [1, 3]


def test_rank_zero_warn_and_info(caplog):
    with pytest.warns(UserWarning, match="careful"):
        pl.utilities.rank_zero_warn("careful")
    with caplog.at_level("INFO", logger="ember"):
        pl.utilities.rank_zero_info("hello %s", "there")
    assert "hello there" in caplog.text


def test_grad_norm_matches_lightning():
    L = lightning()
    from lightning.pytorch.utilities import grad_norm as their_grad_norm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Linear(1, 1))
    model[3].weight.requires_grad_(False)  # no gradient: left out
    model(torch.randn(5, 3)).sum().backward()
    for norm_type, sep in ((2, "/"), (1.5, "/"), ("inf", "_")):
        ours, theirs = grad_norm(model, norm_type, sep), their_grad_norm(model, norm_type, sep)
        assert list(ours) == list(theirs)
        assert all(torch.allclose(ours[k], theirs[k]) for k in ours)
    assert L  # used


def test_grad_norm_refuses_a_bad_norm_type():
    with pytest.raises(ValueError, match=r"grad_norm\(norm_type='fro'\): expected a positive number or 'inf'"):
        grad_norm(nn.Linear(1, 1), "fro")


def test_shared_parameters_are_found_and_tied_again():
    model = nn.Module()
    model.a, model.b, model.c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    model.b.weight = model.a.weight
    model.c.bias = model.a.bias
    shared = find_shared_parameters(model)
    assert shared == [["a.weight", "b.weight"], ["a.bias", "c.bias"]]
    try:
        from lightning.pytorch.utilities import find_shared_parameters as theirs
        assert theirs(model) == shared
    except ImportError:
        pass
    model.b.weight = nn.Parameter(model.a.weight.detach().clone())  # untied
    set_shared_parameters(model, shared)
    assert model.b.weight is model.a.weight and model.c.bias is model.a.bias


def test_suggested_max_num_workers():
    assert suggested_max_num_workers(10_000) == 1
    with pytest.raises(ValueError, match=r"local_world_size=0\): expected >= 1"):
        suggested_max_num_workers(0)


def test_isolate_rng_puts_the_generators_back():
    torch.manual_seed(0)
    with isolate_rng():
        torch.rand(3)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))


# --- module paths -------------------------------------------------------------------------------------

PATHS = {
    "ember.lightning": ["LightningModule", "LightningDataModule", "Trainer", "Callback", "seed_everything"],
    "ember.lightning.core": ["LightningModule", "LightningDataModule"],
    "ember.lightning.core.module": ["LightningModule"],
    "ember.lightning.core.datamodule": ["LightningDataModule"],
    "ember.lightning.trainer": ["Trainer"],
    "ember.lightning.trainer.states": ["TrainerState", "TrainerFn", "TrainerStatus", "RunningStage"],
    "ember.lightning.utilities": ["rank_zero_only", "rank_zero_info", "rank_zero_warn", "grad_norm",
                                  "AttributeDict", "move_data_to_device"],
    "ember.lightning.utilities.rank_zero": ["rank_zero_only", "rank_zero_info", "rank_zero_warn",
                                            "rank_zero_debug"],
    "ember.lightning.utilities.types": ["STEP_OUTPUT", "OptimizerLRScheduler"],
    "ember.lightning.utilities.seed": ["isolate_rng"],
    "ember.lightning.utilities.parsing": ["AttributeDict"],
    "ember.lightning.utilities.exceptions": ["MisconfigurationException"],
    "ember.lightning.utilities.memory": ["garbage_collection_cuda", "is_oom_error"],
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_lightning_module_paths_import(path):
    module = importlib.import_module(path)
    assert all(hasattr(module, name) for name in PATHS[path])
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), (path, name)
    assert pl.core.LightningModule is ember.Module and pl.trainer.Trainer is pl.Trainer


def test_a_name_ember_lacks_says_why_and_what_to_use():
    with pytest.raises(NotSupportedError, match=r"ember.lightning.utilities.CombinedLoader is not supported by "
                                                r"ember: .*ConcatDataset.*See the row 'CombinedLoader' in "
                                                r"docs/lightning-compat.md"):
        from ember.lightning.utilities import CombinedLoader  # noqa: F401
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        pl.utilities.no_such_name


# --- Trainer and DataModule names -----------------------------------------------------------------------


def test_trainer_extras(tmp_path, capsys):
    trainer = ember.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=2, default_root_dir=tmp_path)
    trainer.fit(tiny(ember.Module), loader(), [loader(), loader(batch_size=64)])
    assert trainer.num_val_batches == [8, 1] and trainer.num_sanity_val_batches == [2, 1]
    assert trainer.scaler is None and trainer.distributed_sampler_kwargs is None and not trainer.received_sigterm
    trainer.print("only on rank zero")
    assert capsys.readouterr().out == "only on rank zero\n"
    with trainer.init_module():
        layer = nn.Linear(2, 2)
    assert layer.weight.device == trainer.root_device
    bf16 = ember.Trainer(precision="bf16-true", logger=False)
    with bf16.init_module():
        assert nn.Linear(2, 2).weight.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32


def test_trainer_names_ember_lacks_say_why(tmp_path):
    trainer = ember.Trainer(logger=False)
    assert not hasattr(trainer, "is_last_batch")
    with pytest.raises(AttributeError, match=r"trainer.precision_plugin is not supported by ember: .*trainer.scaler"
                                             r".*See the row 'precision_plugin'"):
        trainer.precision_plugin
    with pytest.raises(AttributeError, match="'Trainer' object has no attribute 'no_such_thing'"):
        trainer.no_such_thing
    with pytest.raises(TypeError, match=r"Trainer\(profiler=\.\.\.\) is a Lightning 2.x argument that ember does not "
                                        r"support: use torch.profiler.*See the row 'profiler'"):
        ember.Trainer(profiler="simple")
    # the compat Trainer takes Lightning's "off" values, as configs written for Lightning pass them
    pl.Trainer(profiler=None, plugins=None, sync_batchnorm=False, enable_autolog_hparams=True, logger=False)
    with pytest.raises(TypeError, match=r"Trainer\(sync_batchnorm=True\) is not supported by ember: convert the "
                                        r"model with torch.nn.SyncBatchNorm"):
        pl.Trainer(sync_batchnorm=True)


class Batches(ember.DataModule):
    def __init__(self, batch_size: int = 8, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.seen = []
        self.shift = 0.0

    def train_dataloader(self):
        return loader(batch_size=self.hparams.batch_size)

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.seen.append("before")
        return [batch[0] * self.hparams.scale, batch[1]]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.seen.append("after")
        return batch

    def state_dict(self):
        return {"shift": self.shift}

    def load_state_dict(self, state_dict):
        self.shift = state_dict["shift"]


def test_a_datamodules_batch_transfer_hooks_run_in_place_of_the_modules(tmp_path):
    data = Batches(scale=0.0)
    trainer = ember.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path)
    model = tiny(ember.Module)
    before = model.layer.weight.detach().clone()
    trainer.fit(model, datamodule=data)
    assert data.seen == ["before", "after"] * 2
    assert torch.equal(model.layer.weight, before)  # inputs scaled to 0: no gradient reaches the weights

    data.shift = 3.5
    trainer.save_checkpoint(tmp_path / "dm.ckpt")
    again = Batches.load_from_checkpoint(tmp_path / "dm.ckpt", batch_size=4)
    assert dict(again.hparams) == {"batch_size": 4, "scale": 0.0} and again.shift == 3.5


def test_datamodule_from_datasets_and_lightnings_checkpoint(tmp_path):
    dataset = loader().dataset
    data = ember.DataModule.from_datasets(dataset, [dataset, dataset], batch_size=16)
    assert len(data.train_dataloader()) == 4 and [len(d) for d in data.val_dataloader()] == [4, 4]
    # a datamodule's keys are Lightning's datamodule_* ones (tests/test_lightning_rows.py compares them)
    assert ember.DataModule.CHECKPOINT_HYPER_PARAMS_KEY == "datamodule_hyper_parameters"
    assert ember.DataModule.name is None

    L = lightning()

    class Theirs(L.LightningDataModule):
        def __init__(self, batch_size: int = 8, scale: float = 1.0):
            super().__init__()
            self.save_hyperparameters()

        def state_dict(self):
            return {"shift": 1.25}

        def train_dataloader(self):
            return loader(batch_size=self.hparams.batch_size)

    class Batches2(Batches):
        pass

    Theirs.__qualname__ = Batches2.__qualname__ = "Batches"
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(tiny(L.LightningModule), datamodule=Theirs(batch_size=4, scale=2.0))
    trainer.save_checkpoint(tmp_path / "theirs.ckpt")
    ours = Batches2.load_from_checkpoint(tmp_path / "theirs.ckpt")
    assert dict(ours.hparams) == {"batch_size": 4, "scale": 2.0} and ours.shift == 1.25


def test_a_datamodule_on_exception_is_refused_until_the_trainer_calls_it():
    with pytest.raises(TypeError, match=r"Broken.on_exception is not supported by ember: handle the failure in a "
                                        r"Callback's on_exception"):
        class Broken(ember.DataModule):
            def on_exception(self, exception):
                pass


def test_remove_ignored_hparams():
    model = Batches(batch_size=2, scale=3.0)
    model.remove_ignored_hparams(["scale"])
    # hparams_initial keeps it, as in Lightning (tests/test_lightning_rows.py compares the two)
    assert dict(model.hparams) == {"batch_size": 2} and dict(model.hparams_initial) == {"batch_size": 2, "scale": 3.0}
