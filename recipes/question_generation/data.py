"""Answer-aware question generation data from SQuAD v1.1 dev (data/squad/dev-v1.1.json.gz).

Each example is the sentence that holds the answer, with the answer marked (``<a> ... </a>``), and the
question asked about it. The 48 articles are split by article, in file order, so no paragraph is seen in
two splits: the first 38 articles train (8,582 questions), the next 5 are dev (1,032), the last 5 test (956).
"""

import gzip
import json
import re
from collections import Counter

import torch
from torch.utils.data import DataLoader, Dataset

import ember.lightning as pl
from recipes.common import data_dir

SPLITS = {"train": slice(0, 38), "dev": slice(38, 43), "test": slice(43, 48)}
PAD, BOS, EOS, UNK, ANSWER_START, ANSWER_END = "<pad>", "<s>", "</s>", "<unk>", "<a>", "</a>"
TOKEN = re.compile(r"<a>|</a>|\w+|[^\w\s]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def tokenize(text):
    return TOKEN.findall(text.lower())


def answer_sentence(context, start, end):
    """The sentence(s) of ``context`` that overlap the character span [start, end)."""
    bounds = [0] + [m.end() for m in SENTENCE_END.finditer(context)] + [len(context)]
    first = max(i for i in range(len(bounds) - 1) if bounds[i] <= start)
    last = max(i for i in range(len(bounds) - 1) if bounds[i] < end)
    return bounds[first], bounds[last + 1]


def read_squad(split):
    """Examples of one split: dicts with the marked ``source`` tokens, ``question`` and ``answer``."""
    with gzip.open(data_dir("squad") / "dev-v1.1.json.gz", "rt", encoding="utf-8") as f:
        articles = json.load(f)["data"][SPLITS[split]]
    examples = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                start, end = answer["answer_start"], answer["answer_start"] + len(answer["text"])
                s_start, s_end = answer_sentence(context, start, end)
                marked = f"{context[s_start:start]} {ANSWER_START} {context[start:end]} {ANSWER_END} {context[end:s_end]}"
                examples.append(
                    {"id": qa["id"], "source": tokenize(marked), "question": qa["question"], "answer": answer["text"]}
                )
    return examples


class WordTokenizer:
    """A lower-cased word vocabulary built from the training split; rarer words become ``<unk>``.

    Args:
        words: the vocabulary, specials first (``WordTokenizer.build`` makes one).
    """

    def __init__(self, words):
        self.itos = list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.stoi[t] for t in (PAD, BOS, EOS, UNK))

    @classmethod
    def build(cls, examples, min_freq=2, max_size=20000):
        counts = Counter()
        for ex in examples:
            counts.update(ex["source"])
            counts.update(tokenize(ex["question"]))
        specials = [PAD, BOS, EOS, UNK, ANSWER_START, ANSWER_END]
        words = [w for w, c in counts.most_common(max_size) if c >= min_freq and w not in specials]
        return cls(specials + words)

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens):
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids):
        return [self.itos[i] for i in ids]

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.itos, f)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))


def clip_around_answer(tokens, max_len):
    """At most ``max_len`` tokens of a long source, in a window that keeps the marked answer."""
    if len(tokens) <= max_len:
        return tokens
    start = min(max(0, tokens.index(ANSWER_START) - max_len // 2), len(tokens) - max_len)
    return tokens[start : start + max_len]


class SquadQGDataset(Dataset):
    def __init__(self, tokenizer, split_set="train", max_source_len=60, max_question_len=30):
        self.examples = read_squad(split_set)
        self.tokenizer = tokenizer
        self.max_source_len = max_source_len
        self.max_question_len = max_question_len

    def __getitem__(self, index):
        ex = self.examples[index]
        source = clip_around_answer(ex["source"], self.max_source_len)
        question = tokenize(ex["question"])[: self.max_question_len]
        return {
            "source_ids": torch.tensor(self.tokenizer.encode(source)),
            "question_ids": torch.tensor(self.tokenizer.encode(question) + [self.tokenizer.eos_id]),
            "source_tokens": source,
            "question": ex["question"],
            "answer": ex["answer"],
        }

    def __len__(self):
        return len(self.examples)


def collate(items, pad_id):
    """Pads sources and questions of a batch; the raw strings travel along for the test writer."""
    source = torch.nn.utils.rnn.pad_sequence([it["source_ids"] for it in items], batch_first=True, padding_value=pad_id)
    question = torch.nn.utils.rnn.pad_sequence([it["question_ids"] for it in items], batch_first=True, padding_value=pad_id)
    return {
        "source_ids": source,
        "source_lengths": torch.tensor([len(it["source_ids"]) for it in items]),
        "question_ids": question,
        "source_tokens": [it["source_tokens"] for it in items],
        "question": [it["question"] for it in items],
        "answer": [it["answer"] for it in items],
    }


class DataModule(pl.LightningDataModule):
    """Write-up 004's DataModule: train / dev / test datasets, batch size set by the tuner."""

    def __init__(self, tokenizer, batch_size=32, test_batch_size=32, max_source_len=60, max_question_len=30):
        super().__init__()
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size
        self.pad_id = tokenizer.pad_id
        lengths = {"max_source_len": max_source_len, "max_question_len": max_question_len}
        self.train_dataset = SquadQGDataset(tokenizer, split_set="train", **lengths)
        self.dev_dataset = SquadQGDataset(tokenizer, split_set="dev", **lengths)
        self.test_dataset = SquadQGDataset(tokenizer, split_set="test", **lengths)

    def _collate(self, items):
        return collate(items, self.pad_id)

    def train_dataloader(self):
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True, collate_fn=self._collate)

    def val_dataloader(self):
        return DataLoader(self.dev_dataset, batch_size=self.batch_size, shuffle=False, collate_fn=self._collate)

    def test_dataloader(self):
        return DataLoader(self.test_dataset, batch_size=self.test_batch_size, shuffle=False, collate_fn=self._collate)
