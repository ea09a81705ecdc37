"""Train answer-aware question generation on SQuAD v1.1 dev (write-up 004), then write test questions.

    python -m recipes.question_generation.train
    python -m recipes.question_generation.train model.hidden_dim=128 training.max_epochs=3
    python -m recipes.question_generation.train -m model.hidden_dim=128,256
"""

import argparse
import logging
import os

import hydra
import torch
from omegaconf import OmegaConf

import ember.lightning as pl
from ember.lightning.callbacks import EarlyStopping, ModelCheckpoint
from recipes.question_generation.data import DataModule, WordTokenizer, read_squad
from recipes.question_generation.model import Model

log = logging.getLogger("recipes.question_generation")


@hydra.main(config_path="configs", config_name="config", version_base="1.2")
def main(cfg):
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(cfg.training.num_threads)
    pl.seed_everything(cfg.seed)

    tokenizer = WordTokenizer.build(read_squad("train"), min_freq=cfg.data.min_freq)
    tokenizer.save("vocab.json")  # with a checkpoint, all that inference needs
    args = argparse.Namespace(
        vocab_size=len(tokenizer),
        pad_id=tokenizer.pad_id,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        unk_id=tokenizer.unk_id,
        **cfg.model,
        lr=cfg.training.lr,
        batch_size=cfg.data.batch_size,
        max_question_len=cfg.data.max_question_len,
        predictions_file="test_predictions.tsv",
    )
    model = Model(args, tokenizer)
    # trainer config
    trainer = pl.Trainer(
        precision=cfg.training.precision,
        default_root_dir=cfg.training.default_root_dir,
        max_epochs=cfg.training.max_epochs,
        limit_train_batches=cfg.training.limit_train_batches,
        limit_val_batches=cfg.training.limit_val_batches,
        callbacks=[
            EarlyStopping(monitor="dev_loss", patience=cfg.training.patience),
            ModelCheckpoint(monitor="dev_loss", filename="{epoch}-{dev_loss:.2f}", save_last=True),
        ],
    )

    # DataModule
    dm = DataModule(
        tokenizer,
        batch_size=cfg.data.batch_size,
        test_batch_size=cfg.data.test_batch_size,
        max_source_len=cfg.data.max_source_len,
        max_question_len=cfg.data.max_question_len,
    )

    # train: the tuner doubles the batch size from init_val; on CPU nothing runs out of memory, so
    # max_trials is what stops it.
    tuner = pl.tuner.tuning.Tuner(trainer)
    new_batch_size = tuner.scale_batch_size(
        model,
        datamodule=dm,
        init_val=cfg.data.batch_size,
        max_trials=cfg.training.scale_batch_size.max_trials,
        steps_per_trial=cfg.training.scale_batch_size.steps_per_trial,
    )
    log.info(f"batch size found by the tuner: {new_batch_size}")
    model.hparams.batch_size = new_batch_size
    trainer.fit(model, datamodule=dm)

    # decide which checkpoint to use
    last_model_path = trainer.checkpoint_callback.last_model_path
    best_model_path = trainer.checkpoint_callback.best_model_path
    _use_model_path = last_model_path if best_model_path == "" else best_model_path
    log.info(f"use checkpoint: {_use_model_path}")

    # run_test
    results = trainer.test(
        model=model if _use_model_path == "" else None,
        datamodule=dm,
        ckpt_path=_use_model_path,
    )[0]
    log.info(f"test: loss = {results['test_loss']:.4f} (perplexity {torch.tensor(results['test_loss']).exp():.1f}), "
             f"BLEU-4 = {results['test_bleu4']:.2f}")
    log.info(f"generated questions: {os.path.abspath(args.predictions_file)}")
    log.info(f"outputs: {os.getcwd()}")
    return results["test_loss"]


if __name__ == "__main__":
    main()
