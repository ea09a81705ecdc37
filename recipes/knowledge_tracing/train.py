"""Train Deep Knowledge Tracing on the synthetic students and report the test AUC.

    python -m recipes.knowledge_tracing.train
    python -m recipes.knowledge_tracing.train training.precision=32 model.hidden_dim=100
    python -m recipes.knowledge_tracing.train -m model.hidden_dim=100,200
    python -m recipes.knowledge_tracing.train training.devices=2   # DDP on 2 CPU processes
"""

import logging
import os

import hydra
import torch
from omegaconf import OmegaConf

import ember.lightning as pl
from ember.lightning.callbacks import EarlyStopping, ModelCheckpoint
from ember.lightning.loggers import TensorBoardLogger
from recipes.knowledge_tracing.data import DktDataModule
from recipes.knowledge_tracing.model import DktLightning

log = logging.getLogger("recipes.knowledge_tracing")


@hydra.main(config_path="configs", config_name="config", version_base="1.2")
def main(cfg):
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(cfg.training.num_threads)
    pl.seed_everything(cfg.seed)

    # 01. Make Dataloader
    dm = DktDataModule(**cfg.data)

    # 02. Define model
    model = DktLightning(**cfg.model)

    # 03. Define Trainer
    trainer = pl.Trainer(
        max_epochs=cfg.training.max_epochs,
        precision=cfg.training.precision,
        gradient_clip_val=cfg.training.gradient_clip_val,
        logger=TensorBoardLogger("logs/", name="dkt"),
        callbacks=[
            ModelCheckpoint(dirpath="models", filename="{epoch}-{val_auc:.4f}", monitor="val_auc", mode="max"),
            EarlyStopping(monitor="val_auc", mode="max", patience=cfg.training.patience),
        ],
        log_every_n_steps=cfg.training.log_every_n_steps,
        deterministic=cfg.training.deterministic,
        limit_train_batches=cfg.training.limit_train_batches,
        limit_val_batches=cfg.training.limit_val_batches,
        accelerator="cpu" if cfg.training.devices > 1 else "auto",
        devices=cfg.training.devices,
    )
    trainer.fit(model, datamodule=dm)

    # 04. Test the best checkpoint on the 2,000 held-out students
    results = trainer.test(model, datamodule=dm, ckpt_path="best")[0]
    if not trainer.is_global_zero:  # with training.devices > 1, rank 0 reports
        return results["test_auc"]
    log.info(f"test AUC = {results['test_auc']:.4f}, test accuracy = {results['test_acc']:.4f}")
    log.info(f"best checkpoint: {os.path.abspath(trainer.checkpoint_callback.best_model_path)}")
    log.info(f"outputs: {os.getcwd()}")
    log.info(f"trained on {trainer.world_size} process(es)")
    return results["test_auc"]


if __name__ == "__main__":
    main()
