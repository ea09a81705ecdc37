"""Scaffolding shared by the logger tests (test_loggers*.py) and test_plot.py: a tiny regression module,
its data, a fit with every logged step kept, and a callback that crashes a run at a given step."""

import torch
from torch.utils.data import DataLoader, TensorDataset

import ember


class TinyRegressor(ember.Module):
    """Linear(2, 1) fit with MSE; logs `train_loss` and `val_loss`. Subclasses set the hyperparameters
    (`__init__`) and `configure_optimizers`."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))


class Tiny(TinyRegressor):
    """Hyperparameters `lr` and a nested `sizes`, both saved (and so logged); plain SGD."""

    def __init__(self, lr=0.1, sizes={"hidden": 2}):
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyWithExampleInput(Tiny):
    """Tiny with an `example_input_array`, so TensorBoardLogger can trace its graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.example_input_array = torch.zeros(3, 2)


class Crash(Exception):
    pass


class CrashAt(ember.Callback):
    """Raises Crash at the start of the batch of global step `step`."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash


def loader(batch_size=2):
    """16 samples of y = x1 + x2, the same every call."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=batch_size)


def fit(logger, callbacks=(), val=False, ckpt_path=None, module=Tiny, **kwargs):
    """Seeded fit of `module()` on loader() (and validation on it with `val`), logging every step;
    `kwargs` go to the Trainer."""
    ember.seed_everything(0)
    trainer = ember.Trainer(logger=logger, callbacks=list(callbacks), log_every_n_steps=1,
                            enable_progress_bar=False, enable_model_summary=False, **kwargs)
    trainer.fit(module(), loader(), loader() if val else None, ckpt_path=ckpt_path)
    return trainer
