"""SamplesVisualisationLogger: the misclassified validation sentences, as a W&B table or a CSV file."""

import csv
from pathlib import Path

import ember.lightning as pl
from ember.lightning.loggers import WandbLogger


class SamplesVisualisationLogger(pl.Callback):
    """After each validation, records the sentences the model got wrong (write-up 003).

    With a ``WandbLogger`` they are logged as a ``wandb.Table`` under ``examples``; with any other logger
    they are written to ``{dirpath}/epoch=E-step=S.csv``. Reads the ``preds`` that
    ``ColaModel.validation_step`` returns.

    Args:
        dirpath: folder for the CSV files.
    """

    def __init__(self, dirpath="misclassified"):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.rows = []

    def on_validation_epoch_start(self, trainer, pl_module):
        self.rows = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        labels = batch["label"].tolist()
        preds = outputs["preds"].tolist()
        for sentence, label, pred in zip(batch["sentence"], labels, preds):
            if label != pred:
                self.rows.append((sentence, label, pred))

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        columns = ["Sentence", "Label", "Predicted"]
        if isinstance(trainer.logger, WandbLogger):
            import wandb

            table = wandb.Table(columns=columns, data=[list(row) for row in self.rows])
            trainer.logger.experiment.log({"examples": table, "global_step": trainer.global_step})
        else:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            path = self.dirpath / f"epoch={trainer.current_epoch}-step={trainer.global_step}.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(self.rows)
