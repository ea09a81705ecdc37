"""Workload 7: the time between epochs, with a short validation in between.

Measured from the end of each epoch's last training batch to the start of the next epoch's first
training batch: epoch-end hooks, a `val_batches`-batch validation, logger and checkpoint work,
and the new train iterator (shuffle) with its first batch. The hand-written loop does only the
validation (model.eval, no_grad, mean loss) and the new iterator.

params: sizes, batch_size, train_batches, val_batches, epochs (epochs - 1 boundaries per run;
the reported value per run is their median).
"""

import statistics
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks import common


def loaders(params):
    bs = params["batch_size"]
    n_train, n_val = params["train_batches"] * bs, params["val_batches"] * bs
    x, y = common.classification_data(n_train + n_val, params["sizes"][0], params["sizes"][-1])
    return (
        common.loader(x[:n_train], y[:n_train], bs, shuffle=True),
        common.loader(x[n_train:], y[n_train:], bs, shuffle=False),
    )


def result(clock):
    boundaries, cpu = clock.boundaries(), clock.boundaries(cpu=True)
    return {
        "boundary_ms": statistics.median(boundaries) * 1e3,
        "boundary_cpu_ms": statistics.median(cpu) * 1e3,
        "boundaries_ms": [b * 1e3 for b in boundaries],
        **clock.loop_result(),
    }


def run_handwritten(params, workdir):
    torch.manual_seed(0)
    train_loader, val_loader = loaders(params)
    model = common.mlp(params["sizes"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    clock = common.StepClock(batches_per_epoch=params["train_batches"])
    val_losses = []
    for _ in range(params["epochs"]):
        model.train()
        for batch_idx, (x, y) in enumerate(train_loader):
            clock.batch_start(batch_idx)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clock.batch_end(batch_idx)
        model.eval()
        with torch.no_grad():
            losses = [F.cross_entropy(model(x), y) for x, y in val_loader]
        val_losses.append(torch.stack(losses).mean().item())
    return {**result(clock), "info": {"framework": "torch " + torch.__version__}}


def run_trainer(framework_name, mode, params, workdir):
    fw = common.framework(framework_name)
    torch.manual_seed(0)
    train_loader, val_loader = loaders(params)
    model = common.classifier_class(fw.Module)(params["sizes"])
    clock = common.StepClock(batches_per_epoch=params["train_batches"])
    trainer = fw.Trainer(
        max_epochs=params["epochs"],
        callbacks=[common.clock_callback(fw.Callback, clock)],
        **common.trainer_kwargs(mode, workdir),
    )
    trainer.fit(model, train_loader, val_loader)
    return {**result(clock), "info": common.trainer_info(fw, trainer)}


CONTENDERS = {
    "handwritten": run_handwritten,
    "ember-bare": partial(run_trainer, "ember", "bare"),
    "ember-defaults": partial(run_trainer, "ember", "defaults"),
    "lightning-bare": partial(run_trainer, "lightning", "bare"),
    "lightning-defaults": partial(run_trainer, "lightning", "defaults"),
}
