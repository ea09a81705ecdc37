"""ColaModel: the MiniLM encoder and a linear head on the [CLS] hidden state (write-up 000)."""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryMatthewsCorrCoef
from transformers import AutoModel

import ember.lightning as pl
from recipes.common import MINILM, pretrained_path


class ColaModel(pl.LightningModule):
    """Acceptable (1) or unacceptable (0) English sentence.

    Args:
        model_name: the pretrained encoder (resolved to its local copy by ``pretrained_path``).
        lr: Adam learning rate.
    """

    def __init__(self, model_name=MINILM, lr=3e-5):
        super(ColaModel, self).__init__()
        self.save_hyperparameters()

        self.bert = AutoModel.from_pretrained(pretrained_path(model_name))
        self.W = nn.Linear(self.bert.config.hidden_size, 2)
        self.num_classes = 2
        self.val_acc = BinaryAccuracy()
        self.val_mcc = BinaryMatthewsCorrCoef()

    def forward(self, input_ids, attention_mask):
        outputs = self.bert(input_ids=input_ids, attention_mask=attention_mask)

        h_cls = outputs.last_hidden_state[:, 0]
        logits = self.W(h_cls)
        return logits

    def training_step(self, batch, batch_idx):
        logits = self.forward(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.forward(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["label"])
        _, preds = torch.max(logits, dim=1)
        self.val_acc(preds, batch["label"])
        self.val_mcc(preds, batch["label"])
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_acc", self.val_acc, prog_bar=True)
        self.log("val_mcc", self.val_mcc, prog_bar=True)
        # Handed to the callbacks' on_validation_batch_end (SamplesVisualisationLogger reads them).
        return {"loss": loss, "preds": preds}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])
