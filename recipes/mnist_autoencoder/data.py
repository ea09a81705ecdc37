"""MNIST from the files kept in data/mnist: the 5k training subset (CSV) and the 10k test set (IDX)."""

import gzip

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember.lightning as pl
from recipes.common import data_dir


def read_csv_subset(path):
    """Images and labels from ``mnist_5k.csv.gz``: 784 pixel columns (0-255), then the label."""
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    return table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int64)


def read_idx(path):
    """The array in one gzipped IDX file (the format MNIST is published in).

    The header is two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions,
    then one big-endian int32 per dimension; the data follows.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {raw[:4].hex()})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def to_dataset(images, labels):
    # As torchvision's ToTensor: (N, 1, 28, 28) floats in [0, 1].
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


class MNISTDataModule(pl.LightningDataModule):
    """Trains on the 5,000-image subset and validates on the 10,000-image test set."""

    def __init__(self, batch_size=32, num_workers=0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers

    def setup(self, stage=None):
        folder = data_dir("mnist")
        if stage in ("fit", None):
            self.train_data = to_dataset(*read_csv_subset(folder / "mnist_5k.csv.gz"))
        self.val_data = to_dataset(
            read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
        )

    def train_dataloader(self):
        return DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.val_data, batch_size=self.batch_size, num_workers=self.num_workers)
