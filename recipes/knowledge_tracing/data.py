"""The synthetic students of the Deep Knowledge Tracing paper (Piech et al. 2015), from data/dkt_synthetic.

``naive_c5_q50_s4000_v0.csv``: one student per row, 50 comma-separated 0/1 answers to exercises 0..49,
which every student meets in the same order. The first 2,000 rows are the training students, the last
2,000 the test students. ``naive_c5_q50_s4000_v0_info.txt`` has one tab-separated line per exercise:
fraction answered correctly, its standard deviation, the hidden concept (0-4) and the difficulty.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember.lightning as pl
from recipes.common import data_dir

N_TRAIN_STUDENTS = 2000


class Preprocess:
    """Reads the answers and splits them into train / valid / test students, as write-up 002's ``dkt``."""

    def __init__(self, args):
        self.args = args
        self.train_data = None
        self.test_data = None

    def load_data(self, file_name):
        answers = np.loadtxt(data_dir("dkt_synthetic") / file_name, delimiter=",", dtype=np.int64)
        n_students, n_exercises = answers.shape
        # Every student answers exercise 0, then 1, ... 49: the exercise ids are the column numbers.
        exercises = np.broadcast_to(np.arange(n_exercises), (n_students, n_exercises)).copy()
        return exercises, answers

    def load_train_data(self, file_name):
        exercises, answers = self.load_data(file_name)
        self.train_data = exercises[:N_TRAIN_STUDENTS], answers[:N_TRAIN_STUDENTS]
        self.test_data = exercises[N_TRAIN_STUDENTS:], answers[N_TRAIN_STUDENTS:]

    def get_train_data(self):
        return self.train_data

    def get_test_data(self):
        return self.test_data

    def split_data(self, data, ratio=0.9, seed=0):
        """Holds out ``1 - ratio`` of the training students, chosen at random with ``seed``, for validation."""
        exercises, answers = data
        order = np.random.default_rng(seed).permutation(len(answers))
        cut = int(len(answers) * ratio)
        train, valid = order[:cut], order[cut:]
        return (exercises[train], answers[train]), (exercises[valid], answers[valid])


def to_dataset(data):
    exercises, answers = data
    return TensorDataset(torch.from_numpy(exercises), torch.from_numpy(answers))


class DktDataModule(pl.LightningDataModule):
    """Train / valid students from the first 2,000 rows, test students from the last 2,000."""

    def __init__(self, file_name="naive_c5_q50_s4000_v0.csv", batch_size=64, train_ratio=0.9, split_seed=0):
        super().__init__()
        self.file_name = file_name
        self.batch_size = batch_size
        self.train_ratio = train_ratio
        self.split_seed = split_seed

    def setup(self, stage=None):
        preprocess = Preprocess(None)
        preprocess.load_train_data(self.file_name)
        train_data, valid_data = preprocess.split_data(
            preprocess.get_train_data(), ratio=self.train_ratio, seed=self.split_seed
        )
        self.train_data = to_dataset(train_data)
        self.valid_data = to_dataset(valid_data)
        self.test_data = to_dataset(preprocess.get_test_data())

    def train_dataloader(self):
        return DataLoader(self.train_data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.valid_data, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_data, batch_size=self.batch_size)
