"""A Hydra app training on 2 ranks, for tests/test_ddp.py: one run folder per job, also under -m."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ember  # noqa: E402

from ddp_job import Net, data  # noqa: E402


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    ember.seed_everything(0, verbose=False)
    out = HydraConfig.get().runtime.output_dir
    trainer = ember.Trainer(accelerator="cpu", devices=2, max_epochs=1, default_root_dir=out,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Net(), DataLoader(data(), batch_size=cfg.get("batch", 8)))
    print(f"rank {trainer.global_rank} done in {out}", flush=True)


if __name__ == "__main__":
    main()
