"""Train the MNIST digit classifier: 4,500 training images, 500 for validation, the 10,000-image test set.

    python -m recipes.mnist.train [--max-epochs 6] [--root runs/mnist] [--resume]

Reports (through `logging`, on stdout unless the caller configured logging) the test accuracy, the
training time and where the logs and the checkpoints are.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import ember
from ember.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from recipes.mnist.data import MNISTDataModule
from recipes.mnist.model import DigitClassifier

log = logging.getLogger("recipes.mnist")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--root", default="runs/mnist", help="where logs and checkpoints go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint under --root")
    args = parser.parse_args(argv)
    # plain lines on stdout, as print would; does nothing when the caller has configured logging
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    ember.seed_everything(args.seed)
    data = MNISTDataModule(batch_size=args.batch_size, seed=args.seed)
    model = DigitClassifier(max_epochs=args.max_epochs)
    checkpoint = ModelCheckpoint(monitor="val_acc", mode="max", filename="{epoch}-{val_acc:.4f}", save_last=True)
    trainer = ember.Trainer(
        max_epochs=args.max_epochs,
        default_root_dir=args.root,
        callbacks=[checkpoint, EarlyStopping(monitor="val_loss", patience=3), LearningRateMonitor()],
        log_every_n_steps=10,
        deterministic=True,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data, ckpt_path="last" if args.resume else None)
    fit_seconds = time.perf_counter() - start
    results = trainer.test(datamodule=data, ckpt_path="best", verbose=False)[0]

    log.info(f"\ntest accuracy   {results['test_acc']:.4f}  (10,000 MNIST test images)")
    log.info(f"test loss       {results['test_loss']:.4f}")
    log.info(f"training time   {fit_seconds:.0f} s for {trainer.current_epoch} epochs")
    log.info(f"logs            {trainer.log_dir}  (metrics.csv, hparams.yaml)")
    log.info(f"best checkpoint {checkpoint.best_model_path}")
    log.info(f"last checkpoint {checkpoint.last_model_path}")
    return results


if __name__ == "__main__":
    main()
