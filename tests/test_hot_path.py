"""The training step forces no host-device sync: values are read only when loggers or the bar need them."""

from __future__ import annotations

import torch

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
    # a hook that nobody overrides must cost nothing per step: Lightning's optimization hooks came in at
    # the count of the loop before them (72.06), and with the strategies' training_step / no_sync the
    # count is 78.06 (main before the hooks merge: 79.06)
    assert per_step <= 78.1, f"{per_step} ember calls per training step (78.06 before)"
