"""Workload 8: data-parallel training on 2 CPU processes (gloo) against 1, hand-written and in a Trainer.

params: sizes (MLP widths), n_samples, batch_size (per process; one process takes 2x), epochs. Every
contender trains workload 1's MLP with Adam on the same data, shuffled, with the same global batch, and
reports rank 0's time from its first batch start to its last batch end divided by the global steps.

- handwritten-ddp: torch.distributed + DistributedDataParallel + DistributedSampler, the two processes
  started with torch.multiprocessing (spawn); the baseline.
- ember-ddp / lightning-ddp: `Trainer(accelerator="cpu", devices=2, strategy="ddp")`, bare; each starts
  its second process by running this child's command again.
- handwritten-1 / ember-1 / lightning-1: one process, batch 2 x batch_size: what the second process buys.
"""

import json
import os
import socket
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import common


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain_loop(model, loader, epochs, sampler=None):
    """Adam on cross-entropy, timed per step; `sampler` (a DistributedSampler) is told each epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    clock = common.StepClock()
    model.train()
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch_idx, (xb, yb) in enumerate(loader):
            clock.batch_start(batch_idx)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clock.batch_end(batch_idx)
    return clock.loop_result()


def _handwritten_rank(rank, params, port, out):
    """One process of the hand-written DDP loop (started by torch.multiprocessing)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x, y = common.classification_data(params["n_samples"], params["sizes"][0], params["sizes"][-1])
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=params["batch_size"], sampler=sampler)
    model = DistributedDataParallel(common.mlp(params["sizes"]))
    result = _plain_loop(model, loader, params["epochs"], sampler)  # backward all-reduces the gradients
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def run_handwritten_ddp(params, workdir):
    import torch.multiprocessing as mp

    out = Path(workdir) / "rank0.json"
    mp.start_processes(_handwritten_rank, args=(params, _free_port(), str(out)), nprocs=2, start_method="spawn")
    return {**json.loads(out.read_text()), "info": {"framework": "torch " + torch.__version__}}


def run_handwritten_one(params, workdir):
    """The plain loop on one process with the global batch (2 x batch_size)."""
    torch.manual_seed(0)
    x, y = common.classification_data(params["n_samples"], params["sizes"][0], params["sizes"][-1])
    train_loader = common.loader(x, y, 2 * params["batch_size"], shuffle=True)
    result = _plain_loop(common.mlp(params["sizes"]), train_loader, params["epochs"])
    return {**result, "info": {"framework": "torch " + torch.__version__}}


def run_trainer(framework_name, devices, params, workdir):
    """ember or Lightning, bare, on `devices` CPU processes with the same global batch."""
    fw = common.framework(framework_name)
    torch.manual_seed(0)
    x, y = common.classification_data(params["n_samples"], params["sizes"][0], params["sizes"][-1])
    train_loader = common.loader(x, y, params["batch_size"] * (2 // devices), shuffle=True)
    model = common.classifier_class(fw.Module)(params["sizes"])
    clock = common.StepClock()
    strategy = {"strategy": "ddp"} if devices > 1 else {}
    trainer = fw.Trainer(max_epochs=params["epochs"], accelerator="cpu", devices=devices, **strategy,
                         callbacks=[common.clock_callback(fw.Callback, clock)], **common.trainer_kwargs("bare", workdir))
    trainer.fit(model, train_loader)
    return {**clock.loop_result(), "info": common.trainer_info(fw, trainer)}


CONTENDERS = {
    "handwritten-ddp": run_handwritten_ddp,
    "ember-ddp": partial(run_trainer, "ember", 2),
    "lightning-ddp": partial(run_trainer, "lightning", 2),
    "handwritten-1": run_handwritten_one,
    "ember-1": partial(run_trainer, "ember", 1),
    "lightning-1": partial(run_trainer, "lightning", 1),
}
