"""Pieces every workload shares: data, models, the step clock, the framework adapters.

The module code handed to ember and to Lightning is the same class body built on either base
(`classifier_class`), so the two trainers run identical user code.
"""

import os
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes):
    """Linear layers with ReLU between them: mlp([64, 128, 10]) is 64->128->ReLU->10."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


def classification_data(n, dim, classes, seed=0):
    """`n` fixed random samples (inputs, labels), the same in every process for a given seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def loader(x, y, batch_size, shuffle):
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle
    )


def log_values(loss, n):
    """The `n` extra values workload 2 logs each step (the same tensors in every contender)."""
    detached = loss.detach()
    return [detached + i for i in range(n)]


def classifier_class(base, log_keys=0):
    """The user's module for workloads 1, 2, 3 and 7, on `base` (ember.Module or LightningModule)."""

    class Classifier(base):
        def __init__(self, sizes):
            super().__init__()
            self.net = mlp(sizes)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, prog_bar=True)
            for i, value in enumerate(log_values(loss, log_keys)):
                self.log(f"m{i}", value, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Classifier


class StepClock:
    """Timestamps taken at the start and end of training batches.

    `first_start` / `last_end` bound the loop (perf_counter), `cpu_first_start` / `cpu_last_end`
    the same in process CPU time (less disturbed by other work on a shared machine than the wall
    clock; it counts every thread of the process, logger threads included). `first_start_wall` is
    time.time() at the first batch start, compared with the parent's spawn time (env BENCH_SPAWN_TIME).
    `epoch_starts` / `epoch_ends` hold the first batch start and last batch end of each epoch, for
    epoch-boundary timing; `probe`, if set, is called once at the first batch start.
    """

    def __init__(self, batches_per_epoch=None, probe=None):
        self.batches_per_epoch = batches_per_epoch
        self.probe = probe
        self.probed = None
        self.first_start = None
        self.cpu_first_start = None
        self.cpu_last_end = None
        self.first_start_wall = None
        self.first_batch_idx = None
        self.last_end = None
        self.steps = 0
        self.epoch_starts = []  # (perf_counter, process_time) pairs
        self.epoch_ends = []

    def batch_start(self, batch_idx):
        now = time.perf_counter()
        if self.first_start is None:
            self.first_start = now
            self.cpu_first_start = time.process_time()
            self.first_start_wall = time.time()
            self.first_batch_idx = batch_idx
            if self.probe is not None:
                self.probed = self.probe()
        if batch_idx == 0:
            self.epoch_starts.append((now, time.process_time()))

    def batch_end(self, batch_idx):
        now = time.perf_counter()
        self.last_end = now
        self.cpu_last_end = time.process_time()
        self.steps += 1
        if self.batches_per_epoch is not None and batch_idx == self.batches_per_epoch - 1:
            self.epoch_ends.append((now, self.cpu_last_end))

    def loop_result(self):
        loop_s = self.last_end - self.first_start
        return {
            "loop_s": loop_s,
            "steps": self.steps,
            "us_per_step": loop_s / self.steps * 1e6,
            "cpu_us_per_step": (self.cpu_last_end - self.cpu_first_start) / self.steps * 1e6,
            "first_batch_since_spawn_s": since_spawn(self.first_start_wall),
        }

    def boundaries(self, cpu=False):
        """Seconds from each epoch's last batch end to the next epoch's first batch start
        (process CPU seconds if `cpu`)."""
        i = 1 if cpu else 0
        return [start[i] - end[i] for end, start in zip(self.epoch_ends, self.epoch_starts[1:])]


def since_spawn(wall_time):
    """Seconds from the parent's spawn of this process (env BENCH_SPAWN_TIME) to `wall_time`."""
    spawned = os.environ.get("BENCH_SPAWN_TIME")
    return None if spawned is None else wall_time - float(spawned)


def clock_callback(base, clock):
    """A callback on `base` (ember.Callback or Lightning's) that feeds `clock`."""

    class ClockCallback(base):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.batch_start(batch_idx)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.batch_end(batch_idx)

    return ClockCallback()


def framework(name):
    """The names a contender needs from ember or Lightning, imported only when asked for."""
    if name == "ember":
        import ember
        import ember.callbacks

        return SimpleNamespace(
            name="ember",
            version=getattr(ember, "__version__", "?"),
            Module=ember.Module,
            Callback=ember.Callback,
            Trainer=ember.Trainer,
            ModelCheckpoint=ember.callbacks.ModelCheckpoint,
        )
    if name == "lightning":
        import lightning
        import lightning.pytorch as L

        return SimpleNamespace(
            name="lightning",
            version=lightning.__version__,
            Module=L.LightningModule,
            Callback=L.Callback,
            Trainer=L.Trainer,
            ModelCheckpoint=L.callbacks.ModelCheckpoint,
        )
    raise ValueError(f"unknown framework {name!r}; expected 'ember' or 'lightning'")


BARE = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


def trainer_kwargs(mode, workdir):
    """`bare`: logger, checkpointing, progress bar and summary off. `defaults`: all left on."""
    if mode == "bare":
        return dict(BARE)
    if mode == "defaults":
        return dict(default_root_dir=workdir)
    raise ValueError(f"unknown trainer mode {mode!r}; expected 'bare' or 'defaults'")


def trainer_info(fw, trainer):
    """What the trainer actually ran with (logger, callbacks), for the notes under each table."""
    logger = getattr(trainer, "logger", None)
    callbacks = getattr(trainer, "callbacks", None) or []
    return {
        "framework": f"{fw.name} {fw.version}",
        "logger": type(logger).__name__ if logger else None,
        "callbacks": [type(c).__name__ for c in callbacks],
    }
