"""Train the MNIST autoencoder of write-up 001, logged to W&B (offline) and TensorBoard together.

    python -m recipes.mnist_autoencoder.train
    python -m recipes.mnist_autoencoder.train training.max_epochs=2 data.batch_size=64
    python -m recipes.mnist_autoencoder.train -m model.lr=1e-3,3e-3
"""

import logging
import os

import hydra
import torch
from omegaconf import OmegaConf

import ember.lightning as pl
from ember.lightning.callbacks import ModelCheckpoint
from ember.lightning.loggers import TensorBoardLogger, WandbLogger
from recipes.mnist_autoencoder.callbacks import ReconstructionPlotter
from recipes.mnist_autoencoder.data import MNISTDataModule
from recipes.mnist_autoencoder.model import LitAutoEncoder

log = logging.getLogger("recipes.mnist_autoencoder")


@hydra.main(config_path="configs", config_name="config", version_base="1.2")
def main(cfg):
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_num_threads(cfg.training.num_threads)
    pl.seed_everything(cfg.seed)

    # data
    dm = MNISTDataModule(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers)
    dm.setup("fit")
    fixed_images = torch.stack([dm.val_data[i][0] for i in range(cfg.data.num_plot_images)])

    # model
    model = LitAutoEncoder(lr=cfg.model.lr)

    # training
    wandb_logger = WandbLogger(project=cfg.wandb_project, save_dir=".", offline=True)
    tb_logger = TensorBoardLogger("logs/", name="mnist")
    trainer = pl.Trainer(
        max_epochs=cfg.training.max_epochs,
        logger=[wandb_logger, tb_logger],
        callbacks=[
            ModelCheckpoint(dirpath="models", monitor="val_loss", mode="min"),
            ReconstructionPlotter(fixed_images, dirpath="reconstructions"),
        ],
        log_every_n_steps=cfg.training.log_every_n_steps,
        deterministic=cfg.training.deterministic,
        limit_train_batches=cfg.training.limit_train_batches,
        limit_val_batches=cfg.training.limit_val_batches,
    )
    trainer.fit(model, datamodule=dm)

    val_loss = trainer.callback_metrics["val_loss"].item()
    log.info(f"val_loss (MSE on the 10k test images) = {val_loss:.5f}")
    log.info(f"best checkpoint: {os.path.abspath(trainer.checkpoint_callback.best_model_path)}")
    log.info(f"outputs: {os.getcwd()}")
    return val_loss


if __name__ == "__main__":
    main()
