"""The order in which fit calls the hooks is the table in docs/hooks.md; this test holds them together."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import ember
from ember.callbacks.base import HOOKS

from conftest import Regressor, loader, quiet_trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
MODULE_HOOKS = [h for h in HOOKS if hasattr(ember.Module, h) and h not in ("on_exception",)] + [
    "training_step", "validation_step", "configure_optimizers", "prepare_data",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"]


def recording(calls: list[str]):
    class RecordingCallback(ember.Callback):
        pass

    for name in HOOKS:
        setattr(RecordingCallback, name, lambda self, *a, _name=name, **k: calls.append(f"Callback.{_name}"))

    class RecordingModule(Regressor):
        pass

    for name in MODULE_HOOKS:
        original = getattr(Regressor, name)

        def hook(self, *args, _name=name, _original=original, **kwargs):
            calls.append(f"Module.{_name}")
            return _original(self, *args, **kwargs)

        setattr(RecordingModule, name, hook)
    return RecordingCallback(), RecordingModule()


def documented_order() -> list[str]:
    """The hook column of the table under '## fit' in docs/hooks.md."""
    text = DOC.read_text().split("## fit", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*\d+\s*\|\s*`([^`]+)`", text, flags=re.M)


def test_fit_calls_hooks_in_the_documented_order(tmp_path):
    calls: list[str] = []
    callback, model = recording(calls)
    data = loader(batch_size=32)  # 64 samples: 2 training batches
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[callback], logger=False,
                            enable_checkpointing=False, limit_val_batches=1, num_sanity_val_steps=1)
    trainer.fit(model, data, loader(batch_size=32))
    assert calls == documented_order()
    assert torch.is_tensor(trainer.callback_metrics["val_loss"])
