"""Train the MNIST digit classifier: 4,500 training images, 500 for validation, the 10,000-image test set.

    python -m recipes.mnist.train [--max-epochs 6] [--root runs/mnist] [--resume]

Prints the test accuracy and where the logs and the best checkpoint are.
"""

from __future__ import annotations

import argparse
import time


import ember
from ember.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from recipes.mnist.data import MNISTDataModule
from recipes.mnist.model import DigitClassifier


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--root", default="runs/mnist", help="where logs and checkpoints go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint under --root")
    args = parser.parse_args(argv)

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

    print()
    print(f"test accuracy   {results['test_acc']:.4f}  (10,000 MNIST test images)")
    print(f"test loss       {results['test_loss']:.4f}")
    print(f"training time   {fit_seconds:.0f} s for {trainer.current_epoch} epochs")
    print(f"logs            {trainer.log_dir}  (metrics.csv, hparams.yaml)")
    print(f"best checkpoint {checkpoint.best_model_path}")
    print(f"last checkpoint {checkpoint.last_model_path}")
    return results


if __name__ == "__main__":
    main()
