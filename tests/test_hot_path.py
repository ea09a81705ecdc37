"""The training step forces no host-device sync: values are read only when loggers or the bar need them."""

from __future__ import annotations

import torch

from conftest import Regressor, loader, quiet_trainer


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
    seed_draw = 1  # the data-order seed, drawn once at fit start (no seed_everything in this test)
    assert len(calls) == flushes * step_values + epoch_values + seed_draw
