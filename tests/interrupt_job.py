"""A job that trains slowly and prints `step N` after each step, for tests/test_interrupts.py to signal.

    python tests/interrupt_job.py ROOT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ember  # noqa: E402
from ember.callbacks import ModelCheckpoint  # noqa: E402

from conftest import Regressor, regression_data  # noqa: E402


class Announce(ember.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        print(f"step {trainer.global_step}", flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    root = sys.argv[1]
    ember.seed_everything(0, verbose=False)
    trainer = ember.Trainer(max_epochs=100, default_root_dir=root, logger=False, enable_progress_bar=False,
                            enable_model_summary=False,
                            callbacks=[ModelCheckpoint(dirpath=Path(root) / "checkpoints", save_last=True), Announce()])
    trainer.fit(Regressor(), DataLoader(regression_data(64), batch_size=8))
    print(f"interrupted {trainer.interrupted} at step {trainer.global_step}", flush=True)
