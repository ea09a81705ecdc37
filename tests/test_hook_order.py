"""The order in which fit calls the hooks is the table in docs/hooks.md, and it is Lightning's: these tests
hold the three together."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import ember
from ember.callbacks.base import HOOKS

from conftest import Regressor, loader, quiet_trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
# the Module's optimization hooks: when one is overridden, ember calls it; when none is, it steps directly
OPTIMIZATION_HOOKS = ["optimizer_step", "optimizer_zero_grad", "backward", "configure_gradient_clipping"]
MODULE_HOOKS = [h for h in HOOKS if hasattr(ember.Module, h) and h not in ("on_exception",)] + [
    "training_step", "validation_step", "configure_optimizers", "prepare_data", "configure_model",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
    "on_validation_model_eval", "on_validation_model_train", "on_validation_model_zero_grad",
    *OPTIMIZATION_HOOKS]


def recording(calls: list[str], module_base: type, callback_base: type, optimization_hooks: bool = True):
    """A callback and a module (subclasses of the given bases) that append each hook they run to `calls`,
    with `(stage=)` when the stage came by keyword."""

    def note(name, kwargs):
        calls.append(name + ("(stage=)" if "stage" in kwargs else ""))

    class RecordingCallback(callback_base):
        pass

    for name in HOOKS:
        if name != "on_exception":
            setattr(RecordingCallback, name, lambda self, *a, _name=name, **k: note(f"Callback.{_name}", k))

    class RecordingModule(module_base):
        pass

    hooks = MODULE_HOOKS if optimization_hooks else [h for h in MODULE_HOOKS if h not in OPTIMIZATION_HOOKS]
    for name in hooks:
        original = getattr(module_base, name)

        def hook(self, *args, _name=name, _original=original, **kwargs):
            note(f"Module.{_name}", kwargs)
            return _original(self, *args, **kwargs)

        setattr(RecordingModule, name, hook)
    return RecordingCallback(), RecordingModule()


def documented_order() -> list[str]:
    """The hook column of the table under '## fit' in docs/hooks.md."""
    text = DOC.read_text().split("## fit", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*\d+\s*\|\s*`([^`]+)`", text, flags=re.M)


def fit_and_record(tmp_path, module_base=Regressor, callback_base=ember.Callback, trainer_class=ember.Trainer,
                   optimization_hooks=True, **options) -> list[str]:
    calls: list[str] = []
    callback, model = recording(calls, module_base, callback_base, optimization_hooks)
    settings = dict(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                    max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                    limit_val_batches=1, num_sanity_val_steps=1)
    settings.update(options)
    trainer = trainer_class(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own notes (num_workers, tips)
        trainer.fit(model, loader(batch_size=32), loader(batch_size=32))  # 64 samples: 2 training batches
    return calls


def test_fit_calls_hooks_in_the_documented_order(tmp_path):
    calls = fit_and_record(tmp_path)
    assert [c.replace("(stage=)", "") for c in calls] == documented_order()
    # the stage reaches setup and teardown by keyword, as Lightning passes it
    assert [c for c in calls if "setup" in c or "teardown" in c] == [
        "Callback.setup(stage=)", "Module.setup(stage=)", "Callback.teardown(stage=)", "Module.teardown(stage=)"]


def test_without_optimization_hooks_the_callbacks_see_the_same_order(tmp_path):
    """With no optimization hook overridden ember steps directly, in the same order."""
    full = fit_and_record(tmp_path / "full")
    direct = fit_and_record(tmp_path / "direct", optimization_hooks=False)
    assert direct == [c for c in full if c.split(".")[1] not in OPTIMIZATION_HOOKS]


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("optimization_hooks", [True, False])
def test_the_order_is_lightnings(tmp_path, accumulate, optimization_hooks):
    L = pytest.importorskip("lightning.pytorch")

    class LightningRegressor(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    lightning = fit_and_record(tmp_path / "lightning", LightningRegressor, L.Callback, L.Trainer,
                               optimization_hooks, accelerator="cpu", accumulate_grad_batches=accumulate)
    ours = fit_and_record(tmp_path / "ember", optimization_hooks=optimization_hooks,
                          accumulate_grad_batches=accumulate)
    assert ours == lightning


def epoch_end_callbacks(calls: list[str], library) -> list:
    """A ModelCheckpoint, an EarlyStopping and another callback, in that order, recording on_train_epoch_end."""

    def recorded(base, name):
        def on_train_epoch_end(self, trainer, pl_module):
            calls.append(name)
            base.on_train_epoch_end(self, trainer, pl_module)

        return type(name, (base,), {"on_train_epoch_end": on_train_epoch_end})

    return [recorded(library.ModelCheckpoint, "ModelCheckpoint")(monitor="score", mode="max"),
            recorded(library.EarlyStopping, "EarlyStopping")(monitor="score", mode="max", patience=5),
            recorded(library.Callback, "Other")()]


def scored_module(base: type, calls: list[str]) -> type:
    class Scored(base):
        """Logs in on_train_epoch_end a score that another callback computed in its on_train_epoch_end."""

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)
            self.score = None

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def on_train_epoch_end(self):
            calls.append("Module")
            self.log("score", self.score)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Scored


class Scorer:
    """The 'Other' callback's job: set the module's score for the epoch."""

    @staticmethod
    def attach(callback):
        original = callback.on_train_epoch_end

        def on_train_epoch_end(trainer, pl_module):
            original(trainer, pl_module)
            pl_module.score = float(trainer.current_epoch)

        callback.on_train_epoch_end = on_train_epoch_end
        return callback


def test_the_module_ends_its_epoch_between_the_other_callbacks_and_the_judges(tmp_path):
    calls: list[str] = []
    callbacks = epoch_end_callbacks(calls, ember.callbacks)
    Scorer.attach(callbacks[2])
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=callbacks, logger=False)
    trainer.fit(scored_module(ember.Module, calls)(), loader(batch_size=32))
    assert calls == ["Other", "Module", "EarlyStopping", "ModelCheckpoint"] * 2
    # the score the callback set reached the module's log and the checkpoint that judged it
    assert trainer.checkpoint_callback.best_model_score.item() == 1.0


def test_the_epoch_end_order_is_lightnings(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    orders = []
    for library, module_base, trainer_class, extra in ((ember, ember.Module, ember.Trainer, {}),
                                                       (L, L.LightningModule, L.Trainer, {"accelerator": "cpu"})):
        calls: list[str] = []
        callbacks = epoch_end_callbacks(calls, library.callbacks if library is ember else L.callbacks)
        Scorer.attach(callbacks[2])
        trainer = trainer_class(default_root_dir=tmp_path / library.__name__, max_epochs=2, callbacks=callbacks,
                                logger=False, enable_progress_bar=False, enable_model_summary=False, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(scored_module(module_base, calls)(), loader(batch_size=32))
        orders.append((calls, trainer.checkpoint_callback.best_model_score.item()))
    assert orders[0] == orders[1]
