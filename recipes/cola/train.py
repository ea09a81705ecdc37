"""Fine-tune MiniLM on CoLA (write-ups 000 and 003) and report validation Matthews correlation and accuracy.

    python -m recipes.cola.train
    python -m recipes.cola.train logger=wandb processing.max_length=48
    python -m recipes.cola.train -m model.lr=3e-5,5e-5 training.limit_train_batches=0.25
"""

import logging
import os

import hydra
import torch
from omegaconf import OmegaConf

import ember.lightning as pl
from ember.lightning.callbacks import EarlyStopping, ModelCheckpoint
from ember.lightning.loggers import TensorBoardLogger, WandbLogger
from recipes.cola.callbacks import SamplesVisualisationLogger
from recipes.cola.data import DataModule
from recipes.cola.inference import ColaPredictor
from recipes.cola.model import ColaModel

log = logging.getLogger("recipes.cola")


def make_logger(cfg):
    if cfg.logger == "tensorboard":
        return TensorBoardLogger("logs/", name="cola", version=1)  # directory: logs/cola/version_1
    if cfg.logger == "wandb":
        return WandbLogger(name="cola", project=cfg.wandb_project, save_dir=".", offline=True)
    raise ValueError(f"logger={cfg.logger!r} is not known; use logger=tensorboard or logger=wandb")


@hydra.main(config_path="configs", config_name="config", version_base="1.2")
def main(cfg):
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(cfg.training.num_threads)
    pl.seed_everything(cfg.seed)

    cola_data = DataModule(
        cfg.model.tokenizer, cfg.processing.batch_size, cfg.processing.max_length, cfg.processing.train_size
    )
    cola_model = ColaModel(cfg.model.name, lr=cfg.model.lr)

    checkpoint_callback = ModelCheckpoint(
        dirpath="./models",
        filename="best-checkpoint",
        monitor="val_loss",
        mode="min",
    )
    trainer = pl.Trainer(
        max_epochs=cfg.training.max_epochs,
        logger=make_logger(cfg),
        callbacks=[
            checkpoint_callback,
            EarlyStopping(monitor="val_loss", patience=cfg.training.patience, verbose=True, mode="min"),
            SamplesVisualisationLogger(dirpath="misclassified"),
        ],
        log_every_n_steps=cfg.training.log_every_n_steps,
        deterministic=cfg.training.deterministic,
        limit_train_batches=cfg.training.limit_train_batches,
        limit_val_batches=cfg.training.limit_val_batches,
        val_check_interval=cfg.training.val_check_interval,
    )
    trainer.fit(cola_model, cola_data)

    # The numbers reported: the best checkpoint (lowest val_loss) on the whole validation split.
    metrics = trainer.validate(cola_model, datamodule=cola_data, ckpt_path="best")[0]
    log.info(f"validation: MCC = {metrics['val_mcc']:.4f}, accuracy = {metrics['val_acc']:.4f}, "
             f"loss = {metrics['val_loss']:.4f}")

    best = os.path.abspath(checkpoint_callback.best_model_path)
    predictor = ColaPredictor(best)
    log.info(f"The boy is sitting on the bench -> {predictor.predict('The boy is sitting on the bench')}")
    log.info(f"best checkpoint: {best}")
    log.info(f"outputs: {os.getcwd()}")
    return metrics["val_mcc"]


if __name__ == "__main__":
    main()
