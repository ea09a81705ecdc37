"""The model and data of write-up 004 for `ember fit experiment=question_generation`: both need the
vocabulary of the SQuAD training split, which a config cannot hold, so these build it (once per process).

    ember fit experiment=question_generation trainer.max_epochs=3
"""

import argparse
import functools

from recipes.question_generation.data import DataModule, WordTokenizer, read_squad
from recipes.question_generation.model import Model


@functools.lru_cache(maxsize=4)
def vocabulary(min_freq):
    return WordTokenizer.build(read_squad("train"), min_freq=min_freq)


def model(emb_dim, hidden_dim, dropout, lr, min_freq, batch_size, max_question_len, predictions_file,
          vocab_file=None):
    """The `Model` of train.py over the training vocabulary; `vocab_file`: where to save it for inference."""
    tokenizer = vocabulary(min_freq)
    if vocab_file:
        tokenizer.save(vocab_file)
    args = argparse.Namespace(vocab_size=len(tokenizer), pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                              eos_id=tokenizer.eos_id, unk_id=tokenizer.unk_id, emb_dim=emb_dim,
                              hidden_dim=hidden_dim, dropout=dropout, lr=lr, batch_size=batch_size,
                              max_question_len=max_question_len, predictions_file=predictions_file)
    return Model(args, tokenizer)


def data(min_freq, batch_size, test_batch_size, max_source_len, max_question_len):
    """The `DataModule` of train.py over the same vocabulary as `model`."""
    return DataModule(vocabulary(min_freq), batch_size=batch_size, test_batch_size=test_batch_size,
                      max_source_len=max_source_len, max_question_len=max_question_len)
