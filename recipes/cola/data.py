"""CoLA 1.1 from data/cola, tokenized with the MiniLM tokenizer (write-up 000's DataModule).

The TSV files have no header; the columns are: source, label (0/1), the original author's mark,
sentence. Train is ``in_domain_train.tsv``; validation is ``in_domain_dev.tsv`` + ``out_of_domain_dev.tsv``
(together GLUE's CoLA validation split).
"""

import csv

import torch
from transformers import AutoTokenizer

import ember.lightning as pl
from recipes.common import MINILM, data_dir, pretrained_path

TRAIN_FILES = ("in_domain_train.tsv",)
VAL_FILES = ("in_domain_dev.tsv", "out_of_domain_dev.tsv")


def read_cola(file_names):
    rows = []
    for name in file_names:
        with open(data_dir("cola") / name, newline="", encoding="utf-8") as f:
            for source, label, _mark, sentence in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                rows.append({"sentence": sentence, "label": int(label)})
    return rows


class DataModule(pl.LightningDataModule):
    """CoLA sentences as padded token ids.

    Args:
        model_name: the tokenizer's model (resolved to its local copy by ``pretrained_path``).
        batch_size: sentences per batch.
        max_length: sentences are truncated and padded to this many tokens.
        train_size: use only the first ``train_size`` shuffled training sentences (None: all 8,551).
    """

    def __init__(self, model_name=MINILM, batch_size=32, max_length=64, train_size=None):
        super().__init__()
        self.batch_size = batch_size
        self.max_length = max_length
        self.train_size = train_size
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained_path(model_name))

    def prepare_data(self):
        for name in TRAIN_FILES + VAL_FILES:
            if not (data_dir("cola") / name).is_file():
                raise FileNotFoundError(f"CoLA file {name} missing from {data_dir('cola')}")

    def tokenize_data(self, example):
        # processing the data
        return self.tokenizer(
            example["sentence"],
            truncation=True,
            padding="max_length",
            max_length=self.max_length,
        )

    def _tokenized(self, rows):
        encoded = self.tokenize_data({"sentence": [row["sentence"] for row in rows]})
        return [
            {
                "sentence": row["sentence"],
                "input_ids": torch.tensor(ids),
                "attention_mask": torch.tensor(mask),
                "label": torch.tensor(row["label"]),
            }
            for row, ids, mask in zip(rows, encoded["input_ids"], encoded["attention_mask"])
        ]

    def setup(self, stage=None):
        if stage == "fit" or stage is None:
            train_rows = read_cola(TRAIN_FILES)
            if self.train_size is not None:
                order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(0))
                train_rows = [train_rows[i] for i in order[: self.train_size].tolist()]
            self.train_data = self._tokenized(train_rows)
        if stage in ("fit", "validate", None):
            self.val_data = self._tokenized(read_cola(VAL_FILES))

    @staticmethod
    def collate(examples):
        """Stacks a batch and cuts the padding columns that no sentence in it uses.

        The model sees the same tokens and mask as with full ``max_length`` padding (padded positions
        are masked out), at a fraction of the cost: most CoLA sentences are under 20 tokens.
        """
        batch = torch.utils.data.default_collate(examples)
        width = int(batch["attention_mask"].sum(dim=1).max())
        batch["input_ids"] = batch["input_ids"][:, :width]
        batch["attention_mask"] = batch["attention_mask"][:, :width]
        return batch

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            self.train_data, batch_size=self.batch_size, shuffle=True, collate_fn=self.collate
        )

    def val_dataloader(self):
        return torch.utils.data.DataLoader(
            self.val_data, batch_size=self.batch_size, shuffle=False, collate_fn=self.collate
        )
