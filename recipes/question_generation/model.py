"""A GRU encoder-decoder with attention that writes a question about the marked answer (write-up 004)."""

import math
from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import ember.lightning as pl
from recipes.question_generation.data import ANSWER_END, ANSWER_START, tokenize


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder, Luong ("general") attention, shared word embeddings.

    Args:
        vocab_size: words in the vocabulary (source and question share it).
        emb_dim: word embedding width.
        hidden_dim: decoder width; each encoder direction has this width too.
        dropout: on embeddings and before the output layer.
        pad_id: the padding index.
    """

    def __init__(self, vocab_size, emb_dim, hidden_dim, dropout, pad_id):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.encoder = nn.GRU(emb_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_dim, hidden_dim)
        self.decoder = nn.GRU(emb_dim, hidden_dim, batch_first=True)
        self.attention = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)
        self.combine = nn.Linear(3 * hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def encode(self, source_ids, source_lengths):
        embedded = self.dropout(self.embedding(source_ids))
        packed = pack_padded_sequence(embedded, source_lengths.cpu(), batch_first=True, enforce_sorted=False)
        memory, last = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=source_ids.size(1))
        hidden = torch.tanh(self.bridge(torch.cat([last[0], last[1]], dim=1))).unsqueeze(0)
        return memory, self.attention(memory), hidden

    def decode(self, question_in, memory, keys, source_mask, hidden):
        """Logits for each next word; all steps at once under teacher forcing, or one step when decoding."""
        output, hidden = self.decoder(self.dropout(self.embedding(question_in)), hidden)
        scores = torch.bmm(output, keys.transpose(1, 2)).masked_fill(~source_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)
        combined = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))
        return self.out(self.dropout(combined)), hidden, weights


def corpus_bleu(hypotheses, references, max_n=4):
    """Corpus BLEU-4 (Papineni et al. 2002) with one reference per sentence, as a fraction in [0, 1]."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        for n in range(1, max_n + 1):
            hyp_ngrams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
            ref_ngrams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            matches[n - 1] += sum(min(c, ref_ngrams[g]) for g, c in hyp_ngrams.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = min(0.0, 1 - ref_len / hyp_len)
    return math.exp(log_precision + brevity)


class Model(pl.LightningModule):
    """Question generation as in write-up 004: hyperparameters from an argparse Namespace.

    Args:
        args: Namespace with vocab_size, pad_id, bos_id, eos_id, unk_id, emb_dim, hidden_dim, dropout,
            lr, batch_size, max_question_len and predictions_file.
        tokenizer: the ``WordTokenizer``; test_step needs it to write questions as words.
    """

    def __init__(self, args, tokenizer=None):
        super().__init__()
        self.save_hyperparameters(args)  # written to hparams.yaml and into each checkpoint
        self.tokenizer = tokenizer
        self.model = Seq2Seq(args.vocab_size, args.emb_dim, args.hidden_dim, args.dropout, args.pad_id)

    def forward(self, source_ids, source_lengths, question_in):
        memory, keys, hidden = self.model.encode(source_ids, source_lengths)
        logits, _, _ = self.model.decode(question_in, memory, keys, source_ids != self.hparams.pad_id, hidden)
        return logits

    def _loss(self, batch):
        questions = batch["question_ids"]
        bos = torch.full_like(questions[:, :1], self.hparams.bos_id)
        logits = self(batch["source_ids"], batch["source_lengths"], torch.cat([bos, questions[:, :-1]], dim=1))
        return F.cross_entropy(logits.flatten(0, 1), questions.flatten(), ignore_index=self.hparams.pad_id)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["question"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("dev_loss", loss, prog_bar=True, batch_size=len(batch["question"]))  # EarlyStopping and ModelCheckpoint watch it

    @torch.no_grad()
    def generate(self, source_ids, source_lengths):
        """Greedy decoding. A predicted ``<unk>`` is replaced by the source word it attends to most."""
        memory, keys, hidden = self.model.encode(source_ids, source_lengths)
        source_mask = source_ids != self.hparams.pad_id
        word = torch.full((len(source_ids), 1), self.hparams.bos_id, device=source_ids.device)
        words, attended = [], []
        for _ in range(self.hparams.max_question_len + 1):
            logits, hidden, weights = self.model.decode(word, memory, keys, source_mask, hidden)
            word = logits.argmax(dim=-1)
            words.append(word)
            attended.append(weights.argmax(dim=-1))
            if (torch.cat(words, dim=1) == self.hparams.eos_id).any(dim=1).all():
                break
        return torch.cat(words, dim=1).tolist(), torch.cat(attended, dim=1).tolist()

    def on_test_epoch_start(self):
        self._predictions = open(self.hparams.predictions_file, "w", encoding="utf-8")
        self._predictions.write("answer\treference\tgenerated\n")
        self._hypotheses, self._references = [], []

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch), batch_size=len(batch["question"]))
        ids, attended = self.generate(batch["source_ids"], batch["source_lengths"])
        for i, (sentence_ids, positions) in enumerate(zip(ids, attended)):
            source = batch["source_tokens"][i]
            words = []
            for word_id, position in zip(sentence_ids, positions):
                if word_id == self.hparams.eos_id:
                    break
                word = self.tokenizer.itos[word_id]
                if word_id == self.hparams.unk_id and source[position] not in (ANSWER_START, ANSWER_END):
                    word = source[position]
                words.append(word)
            self._hypotheses.append(words)
            self._references.append(tokenize(batch["question"][i]))
            self._predictions.write(f"{batch['answer'][i]}\t{batch['question'][i]}\t{' '.join(words)}\n")

    def on_test_epoch_end(self):
        self._predictions.close()
        self.log("test_bleu4", 100 * corpus_bleu(self._hypotheses, self._references))

    def configure_optimizers(self):
        self.opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return self.opt
