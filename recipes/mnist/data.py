"""MNIST from the files shipped in data/mnist (see data/README.md for provenance and licence).

- `mnist_5k.csv.gz`: the first 500 training images of each digit, 784 pixel columns (0-255) then the label.
- `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`: the official 10,000-image test set (IDX format).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember

DATA = Path(__file__).resolve().parents[2] / "data" / "mnist"


def load_train_csv(path: Path = DATA / "mnist_5k.csv.gz") -> tuple[torch.Tensor, torch.Tensor]:
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :784].copy()).view(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, 784].astype(np.int64))


def load_idx(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(images_path) as f:
        magic, count, rows, cols = np.frombuffer(f.read(16), dtype=">i4")
        if magic != 2051:
            raise ValueError(f"{images_path} is not an IDX image file (magic {magic}, expected 2051).")
        images = np.frombuffer(f.read(), dtype=np.uint8).reshape(count, 1, rows, cols)
    with gzip.open(labels_path) as f:
        magic, count = np.frombuffer(f.read(8), dtype=">i4")
        if magic != 2049:
            raise ValueError(f"{labels_path} is not an IDX label file (magic {magic}, expected 2049).")
        labels = np.frombuffer(f.read(), dtype=np.uint8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def normalize(images: torch.Tensor) -> torch.Tensor:
    # the MNIST training-set mean and std of pixel intensity
    return (images.float() / 255.0 - 0.1307) / 0.3081


class MNISTDataModule(ember.DataModule):
    """5,000 training images (500 held out for validation) and the 10,000-image test set."""

    def __init__(self, batch_size: int = 64, val_size: int = 500, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and not hasattr(self, "train_set"):
            images, labels = load_train_csv()
            full = TensorDataset(normalize(images), labels)
            split = [len(full) - self.hparams.val_size, self.hparams.val_size]
            self.train_set, self.val_set = random_split(full, split,
                                                        generator=torch.Generator().manual_seed(self.hparams.seed))
        if stage == "test" and not hasattr(self, "test_set"):
            images, labels = load_idx(DATA / "t10k-images-idx3-ubyte.gz", DATA / "t10k-labels-idx1-ubyte.gz")
            self.test_set = TensorDataset(normalize(images), labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=1000)
