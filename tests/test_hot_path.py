"""The training step forces no host-device sync: values are read only when loggers or the bar need them."""

from __future__ import annotations

import pytest
import torch

import ember

from conftest import Regressor, loader, quiet_trainer, regression_data


class ManyKeys(Regressor):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        for i in range(20):
            self.log(f"m{i}", loss * i, on_step=True, on_epoch=True, prog_bar=i == 0)
        return loss


def test_no_item_calls_between_logging_steps(tmp_path, monkeypatch):
    calls: list[int] = []
    original = torch.Tensor.item

    def counting_item(self):
        calls.append(1)
        return original(self)

    trainer = quiet_trainer(tmp_path, max_epochs=1, log_every_n_steps=4, enable_checkpointing=False)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    trainer.fit(ManyKeys(), loader(batch_size=4))  # 16 steps
    monkeypatch.undo()
    step_values = 21  # train_loss and m0..m19 per flush
    flushes = 16 // 4
    epoch_values = 21
    # no data-order seed is drawn: the loader does not shuffle (a shuffling one would add one .item())
    assert len(calls) == flushes * step_values + epoch_values


def ember_calls_per_step(tmp_path, model_class, steps: int) -> int:
    """Python calls into ember's own files during a fit of `steps` steps."""
    import sys
    from pathlib import Path

    import ember

    root = str(Path(ember.__file__).parent)
    calls = [0]

    def count(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(root):
            calls[0] += 1

    trainer = quiet_trainer(tmp_path / str(steps), max_epochs=1, log_every_n_steps=50, logger=False,
                            enable_checkpointing=False)
    data = loader(regression_data(4 * steps), batch_size=4)
    sys.setprofile(count)
    try:
        trainer.fit(model_class(), data)
    finally:
        sys.setprofile(None)
    return calls[0]


def test_a_step_costs_a_fixed_small_number_of_ember_calls(tmp_path):
    """With nothing overridden a step runs the hooks by name and steps directly: no closure, no wrapper.
    The count is ember's own Python calls per step, measured over 100 extra steps (setup cancels out)."""
    per_step = (ember_calls_per_step(tmp_path, Regressor, 150) - ember_calls_per_step(tmp_path, Regressor, 50)) / 100
    # a hook that nobody implements is not called at all (Optimization.active_hooks): 16.16 calls per step,
    # from 76.06 when every per-step hook was called through an empty callback loop and a no-op method
    assert per_step <= 16.2, f"{per_step} ember calls per training step (16.16 before)"


PER_STEP = ["on_train_batch_start", "on_train_batch_end", "on_before_zero_grad", "on_before_backward",
            "on_after_backward", "on_before_optimizer_step"]


@pytest.mark.parametrize("where", ["module instance", "callback instance", "callback class"])
@pytest.mark.parametrize("hook", PER_STEP)
def test_a_per_step_hook_set_anywhere_is_called_every_step(tmp_path, hook, where):
    """Skipping the hooks nobody implements must not skip one given on an instance (Lightning allows
    `model.on_after_backward = fn`), nor one a callback class defines; and what it logs is kept."""
    seen: list[int] = []

    def record(*args):
        seen.append(1)
        module.log(f"from_{hook}", float(len(seen)))

    module = Regressor()
    callbacks = []
    if where == "module instance":
        setattr(module, hook, record)
    elif where == "callback instance":
        callback = ember.Callback()
        setattr(callback, hook, record)
        callbacks.append(callback)
    else:
        callbacks.append(type("Hooked", (ember.Callback,), {hook: lambda self, *args: record()})())
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False, enable_checkpointing=False, callbacks=callbacks)
    trainer.fit(module, loader(regression_data(24), batch_size=4))  # 6 steps
    assert len(seen) == 6
    assert trainer.callback_metrics[f"from_{hook}"].item() == 6.0
