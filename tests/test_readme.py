"""The README's example runs as written (with small random loaders standing in for the user's data)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(tmp_path, monkeypatch):
    section = README.read_text().split("## A Module and a Trainer", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    generator = torch.Generator().manual_seed(0)
    namespace = {
        "train_loader": DataLoader(TensorDataset(torch.randn(64, 784, generator=generator),
                                                 torch.randint(0, 10, (64,), generator=generator)), batch_size=16),
        "val_loader": DataLoader(TensorDataset(torch.randn(32, 784, generator=generator),
                                               torch.randint(0, 10, (32,), generator=generator)), batch_size=16),
    }
    exec(compile(code, str(README), "exec"), namespace)
    trainer, model = namespace["trainer"], namespace["model"]
    assert trainer.global_step > 0
    assert Path(trainer.checkpoint_callback.best_model_path).is_file()
    assert model.hparams.lr == 1e-3
