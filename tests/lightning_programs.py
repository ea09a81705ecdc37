"""Programs shaped like what Lightning users write, each a function of the `pl` module (`lightning.pytorch`
or `ember.lightning`), so that the code run under both libraries is the same text; and `run`, which fits
one and returns what the two must agree on (tests/test_lightning_programs.py).

Also a script: `python tests/lightning_programs.py` runs a LightningCLI whose library is named by the
environment variable PL (`lightning.pytorch` or `ember.lightning`)."""

from __future__ import annotations

import csv
import functools
import importlib
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def data(n: int = 32, batch_size: int = 8, features: int = 4, seed: int = 0, shuffle: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = x @ torch.linspace(-1, 1, features).unsqueeze(1) + 0.1
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def gan(pl: Any) -> type:
    """Two optimizers in manual optimization, each step between toggle_optimizer / untoggle_optimizer;
    `training_step(batch)` without batch_idx; samples written with the logger's TensorBoard writer."""

    class GAN(pl.LightningModule):
        def __init__(self, latent: int = 3, lr: float = 0.01):
            super().__init__()
            self.save_hyperparameters()
            self.automatic_optimization = False
            self.generator = nn.Sequential(nn.Linear(latent, 8), nn.ReLU(), nn.Linear(8, 4))
            self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
            self.optimizer_types: list[bool] = []

        def forward(self, z):
            return self.generator(z)

        def adversarial_loss(self, logits, real: bool):
            target = torch.ones_like(logits) if real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)

        def training_step(self, batch):
            real = batch[0]
            opt_g, opt_d = self.optimizers()
            self.optimizer_types.append(isinstance(opt_g, torch.optim.Optimizer))
            z = torch.randn(real.shape[0], self.hparams.latent)

            self.toggle_optimizer(opt_g)
            fake = self(z)
            g_loss = self.adversarial_loss(self.discriminator(fake), real=True)
            self.log("g_loss", g_loss, prog_bar=True)
            self.manual_backward(g_loss)
            opt_g.step()
            opt_g.zero_grad()
            self.untoggle_optimizer(opt_g)

            self.toggle_optimizer(opt_d)
            d_loss = (self.adversarial_loss(self.discriminator(real), real=True)
                      + self.adversarial_loss(self.discriminator(fake.detach()), real=False)) / 2
            self.log("d_loss", d_loss, prog_bar=True)
            self.manual_backward(d_loss)
            opt_d.step()
            opt_d.zero_grad()
            self.untoggle_optimizer(opt_d)

        def validation_step(self, batch, batch_idx):
            self.log("val_d_real", torch.sigmoid(self.discriminator(batch[0])).mean())

        def on_train_epoch_end(self):
            samples = self(torch.randn(4, self.hparams.latent)).detach()
            self.logger.experiment.add_image("samples", samples.unsqueeze(0), self.current_epoch)

        def configure_optimizers(self):
            lr = self.hparams.lr
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
            return [opt_g, opt_d], []

    return GAN


def transfer(pl: Any) -> type:
    """A pretrained-looking backbone (`self.backbone`, as BackboneFinetuning expects) and a new head; the
    optimizer sees only what requires grad."""

    class Transfer(pl.LightningModule):
        def __init__(self, lr: float = 0.01):
            super().__init__()
            self.save_hyperparameters()
            self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
            self.head = nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.head(self.backbone(x)), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.mse_loss(self.head(self.backbone(x)), y))

        def configure_optimizers(self):
            return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=self.hparams.lr)

    return Transfer


def freeze_unfreeze(pl: Any, at_epoch: int = 1) -> Any:
    """A BaseFinetuning subclass: the backbone frozen before training, unfrozen (with its own learning
    rate) at `at_epoch`."""

    class FreezeUnfreeze(pl.callbacks.BaseFinetuning):
        def __init__(self, unfreeze_at_epoch: int):
            super().__init__()
            self.unfreeze_at_epoch = unfreeze_at_epoch

        def freeze_before_training(self, pl_module):
            self.freeze(pl_module.backbone)

        def finetune_function(self, pl_module, current_epoch, optimizer):
            if current_epoch == self.unfreeze_at_epoch:
                self.unfreeze_and_add_param_group(modules=pl_module.backbone, optimizer=optimizer, lr=0.001,
                                                  train_bn=True)

    return FreezeUnfreeze(at_epoch)


def warmup(pl: Any) -> type:
    """The documented learning-rate warm-up: `optimizer_step` overridden, the rate scaled over the first
    steps, then the optimizer stepped with the closure it was given."""

    class WarmUp(pl.LightningModule):
        def __init__(self, lr: float = 0.1, warmup_steps: int = 4):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            return loss

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            if self.trainer.global_step < self.hparams.warmup_steps:
                scale = min(1.0, float(self.trainer.global_step + 1) / self.hparams.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = scale * self.hparams.lr
            optimizer.step(closure=optimizer_closure)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    return WarmUp


def template(pl: Any, ignore: tuple[str, ...] = ()) -> type:
    """lightning-hydra-template's shape: the network and a partial optimizer / scheduler come in as
    arguments, kept as hyperparameters (`logger=False`), built in configure_optimizers."""

    class LitModule(pl.LightningModule):
        def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                     compile: bool = False):
            super().__init__()
            self.save_hyperparameters(logger=False, ignore=list(ignore))
            self.net = net

        def model_step(self, batch):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def training_step(self, batch, batch_idx):
            loss = self.model_step(batch)
            self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self.model_step(batch), on_step=False, on_epoch=True, prog_bar=True)

        def test_step(self, batch, batch_idx):
            self.log("test/loss", self.model_step(batch), on_step=False, on_epoch=True)

        def configure_optimizers(self):
            optimizer = self.hparams.optimizer(params=self.trainer.model.parameters())
            if self.hparams.scheduler is not None:
                scheduler = self.hparams.scheduler(optimizer=optimizer)
                return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss",
                                                                 "interval": "epoch", "frequency": 1}}
            return {"optimizer": optimizer}

    return LitModule


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def template_arguments() -> dict[str, Any]:
    return dict(net=small_net(), optimizer=functools.partial(torch.optim.Adam, lr=0.01, weight_decay=0.0),
                scheduler=functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min", factor=0.5,
                                            patience=0))


def dropout_net(pl: Any) -> type:
    """A network with dropout, so that the random numbers drawn during fit decide the weights."""

    class DropoutNet(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    return DropoutNet


class StepCounter:
    """Counts optimizer steps through the `on_before_optimizer_step` hook of a Callback of either library."""

    @staticmethod
    def make(pl: Any) -> Any:
        class CountSteps(pl.Callback):
            def __init__(self):
                self.steps = 0

            def on_before_optimizer_step(self, trainer, pl_module, optimizer):
                self.steps += 1

        return CountSteps()


def files_under(root: Path, suffix: str) -> list[str]:
    """The files ending in `suffix` under `root`, as sorted relative paths."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob(f"*{suffix}"))


def csv_columns(root: Path) -> dict[str, list[str]]:
    """The header of every metrics.csv under `root`, by relative folder."""
    found = {}
    for path in Path(root).rglob("metrics.csv"):
        with open(path, newline="") as f:
            found[str(path.parent.relative_to(root))] = sorted(next(csv.reader(f)))
    return found


def csv_steps(root: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Each metrics.csv under `root` as (step, the keys written in that row), by relative folder."""
    found = {}
    for path in Path(root).rglob("metrics.csv"):
        with open(path, newline="") as f:
            found[str(path.parent.relative_to(root))] = [(row["step"], sorted(k for k, v in row.items() if v))
                                                         for row in csv.DictReader(f)]
    return found


def csv_rows(root: Path) -> list[dict[str, str]]:
    (path,) = Path(root).rglob("metrics.csv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(pl: Any, model: Any, root: Path, fit: Callable | None = None, callbacks: list | None = None,
        **options: Any) -> SimpleNamespace:
    """Fit `model` with `pl.Trainer` under `root` and return what the libraries must agree on."""
    counter = StepCounter.make(pl)
    settings = dict(default_root_dir=root, enable_progress_bar=False, enable_model_summary=False,
                    accelerator="cpu", logger=pl.loggers.CSVLogger(root))
    settings.update(options)
    trainer = pl.Trainer(callbacks=[counter, *(callbacks or [])], **settings)
    with warnings.catch_warnings():
        if pl.__name__.startswith("lightning"):
            warnings.simplefilter("ignore")  # Lightning's notes (num_workers, tips); ember's warnings stay
        (fit or (lambda t, m: t.fit(m, data())))(trainer, model)
    return SimpleNamespace(
        trainer=trainer, model=model, optimizer_steps=counter.steps, global_step=trainer.global_step,
        epoch=trainer.current_epoch, logged=sorted(trainer.logged_metrics),
        callback_metrics=sorted(trainer.callback_metrics), columns=csv_columns(root), rows=csv_steps(root),
        checkpoints=files_under(root, ".ckpt"))


def comparable(result: SimpleNamespace) -> dict[str, Any]:
    return {k: v for k, v in vars(result).items() if k not in ("trainer", "model")}


def same_weights(a: Any, b: Any) -> bool:
    """Modules (or state dicts) with the same keys and equal tensors, bit for bit."""
    sa, sb = (x.state_dict() if isinstance(x, nn.Module) else x for x in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def cli_main() -> None:
    """A LightningCLI script: the model and datamodule from this file, the rest from the YAML config."""
    library = os.environ["PL"]
    pl = importlib.import_module(library)
    cli = importlib.import_module(f"{library}.cli")

    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int = 8, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def shared_step(self, batch, name: str):
            loss = F.mse_loss(self.net(batch[0]), batch[1])
            self.log(name, loss)
            return loss

        def training_step(self, batch, batch_idx):
            return self.shared_step(batch, "train_loss")

        def validation_step(self, batch, batch_idx):
            self.shared_step(batch, "val_loss")

        def test_step(self, batch, batch_idx):
            self.shared_step(batch, "test_loss")

    class Data(pl.LightningDataModule):
        def __init__(self, batch_size: int = 8, size: int = 32):
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self):
            return data(self.hparams.size, self.hparams.batch_size)

        def val_dataloader(self):
            return data(16, self.hparams.batch_size, seed=1)

        def test_dataloader(self):
            return data(16, self.hparams.batch_size, seed=2)

    cli.LightningCLI(Regressor, Data)


if __name__ == "__main__":
    cli_main()
