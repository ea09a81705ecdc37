"""Workload 6b: resume to a position in the middle of an epoch.

A tiny model trains on an epoch of `batches_per_epoch` batches and is checkpointed at batch
`ckpt_step` (setup, once per contender, not timed; it runs one step past the checkpoint and
records which samples that uninterrupted next batch held). Each timed run starts a fresh process
that resumes from that checkpoint with max_steps = ckpt_step + 1 and measures the time from the
parent's spawn to the start of the first training batch after the resume, how many samples the
dataset served before it (`__getitem__` calls: a resume that replays the skipped batches through
the loader reads ckpt_step * batch_size samples it throws away), and whether that batch holds the
same samples as the uninterrupted run's.

params: batches_per_epoch, ckpt_step, batch_size, ckpt_dir (a folder the parent keeps between
the setup and the timed runs).
"""

import json
import os
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks import common

SIZES = [8, 16, 2]


class CountingDataset(torch.utils.data.Dataset):
    """Fixed random samples that remember which indices were read, in order."""

    def __init__(self, n, dim=SIZES[0], classes=SIZES[-1]):
        self.x, self.y = common.classification_data(n, dim, classes)
        self.read = []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        self.read.append(int(index))
        return self.x[index], self.y[index]


def dataset(params):
    return CountingDataset(params["batches_per_epoch"] * params["batch_size"])


def tiny_class(base):
    class Tiny(base):
        def __init__(self):
            super().__init__()
            self.net = common.mlp(SIZES)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Tiny


def find_checkpoint(folder):
    """The step checkpoint ModelCheckpoint wrote (e.g. epoch=0-step=9000.ckpt), else last.ckpt.

    The step file, not last.ckpt: setup runs one step past the checkpoint, and a callback may
    refresh last.ckpt when training ends.
    """
    names = sorted(os.listdir(folder))
    steps = [n for n in names if n.endswith(".ckpt") and n != "last.ckpt"]
    if len(steps) == 1:
        return os.path.join(folder, steps[0])
    if "last.ckpt" in names:
        return os.path.join(folder, "last.ckpt")
    raise FileNotFoundError(f"expected one step checkpoint or last.ckpt in {folder}, found {names}")


def next_batch_path(params):
    return os.path.join(params["ckpt_dir"], "next_batch.json")


def save_next_batch(params, data):
    """Record the samples of the batch the uninterrupted run trained on right after the checkpoint."""
    with open(next_batch_path(params), "w") as f:
        json.dump(data.read[-params["batch_size"] :], f)


def resume_result(params, data, clock, global_step, info):
    """What a timed resume reports; `first_batch` is data.read as it was when that batch started."""
    read_before, first_batch = clock.probed
    with open(next_batch_path(params)) as f:
        expected = json.load(f)
    return {
        "time_to_first_batch_s": common.since_spawn(clock.first_start_wall),
        "getitem_before_first_batch": read_before,
        "getitem_total": len(data.read),
        "same_batch_as_uninterrupted": int(first_batch == expected),
        "first_batch_idx": clock.first_batch_idx,
        "steps_after_resume": clock.steps,
        "global_step": global_step,
        "info": info,
    }


def probe(data, batch_size):
    return lambda: (len(data.read), data.read[-batch_size:])


def trainer_for(fw, params, max_steps, ckpt_dir, extra_callbacks=()):
    checkpoint = fw.ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=params["ckpt_step"], save_last=True
    )
    return fw.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint, *extra_callbacks],
    )


def setup_trainer(framework_name, params, workdir):
    """ModelCheckpoint(every_n_train_steps=ckpt_step, save_last=True); one step past it."""
    fw = common.framework(framework_name)
    torch.manual_seed(0)
    data = dataset(params)
    train_loader = torch.utils.data.DataLoader(data, batch_size=params["batch_size"], shuffle=True)
    trainer = trainer_for(fw, params, params["ckpt_step"] + 1, params["ckpt_dir"])
    trainer.fit(tiny_class(fw.Module)(), train_loader)
    save_next_batch(params, data)
    return {
        "checkpoint": find_checkpoint(params["ckpt_dir"]),
        "files": sorted(os.listdir(params["ckpt_dir"])),
    }


def resume_trainer(framework_name, params, workdir):
    """Trainer(max_steps=ckpt_step + 1).fit(model, loader, ckpt_path=...) in a fresh process."""
    fw = common.framework(framework_name)
    torch.manual_seed(0)
    data = dataset(params)
    train_loader = torch.utils.data.DataLoader(data, batch_size=params["batch_size"], shuffle=True)
    clock = common.StepClock(probe=probe(data, params["batch_size"]))
    # The resumed run checkpoints into its own folder so the setup checkpoint stays untouched.
    trainer = trainer_for(
        fw,
        params,
        params["ckpt_step"] + 1,
        workdir,
        extra_callbacks=[common.clock_callback(fw.Callback, clock)],
    )
    ckpt_path = find_checkpoint(params["ckpt_dir"])
    trainer.fit(tiny_class(fw.Module)(), train_loader, ckpt_path=ckpt_path)
    info = {"framework": f"{fw.name} {fw.version}", "checkpoint": os.path.basename(ckpt_path)}
    return resume_result(params, data, clock, trainer.global_step, info)


def epoch_order(n, epoch):
    """The hand-written loop's shuffle: a permutation seeded by the epoch, so it can be rebuilt."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1000 + epoch))


def handwritten_path(params):
    return os.path.join(params["ckpt_dir"], "handwritten.pt")


def train_handwritten(model, optimizer, train_loader, first_batch_idx, max_steps, clock):
    step = first_batch_idx
    for batch_idx, (x, y) in enumerate(train_loader, start=first_batch_idx):
        clock.batch_start(batch_idx)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        clock.batch_end(batch_idx)
        step += 1
        if step == max_steps:
            return step
    return step


def setup_handwritten(params, workdir):
    torch.manual_seed(0)
    data = dataset(params)
    model = common.mlp(SIZES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = epoch_order(len(data), 0).tolist()
    train_loader = torch.utils.data.DataLoader(data, batch_size=params["batch_size"], sampler=order)
    batches = iter(train_loader)
    step = train_handwritten(model, optimizer, batches, 0, params["ckpt_step"], common.StepClock())
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    state.update(epoch=0, batch_in_epoch=step)
    torch.save(state, handwritten_path(params))
    train_handwritten(model, optimizer, batches, step, step + 1, common.StepClock())
    save_next_batch(params, data)
    return {"checkpoint": handwritten_path(params), "files": sorted(os.listdir(params["ckpt_dir"]))}


def resume_handwritten(params, workdir):
    """Load weights and optimizer, rebuild the epoch's order and start the sampler at the position."""
    torch.manual_seed(0)
    data = dataset(params)
    model = common.mlp(SIZES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = torch.load(handwritten_path(params), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    start = state["batch_in_epoch"]
    order = epoch_order(len(data), state["epoch"])[start * params["batch_size"] :].tolist()
    train_loader = torch.utils.data.DataLoader(data, batch_size=params["batch_size"], sampler=order)
    clock = common.StepClock(probe=probe(data, params["batch_size"]))
    step = train_handwritten(model, optimizer, train_loader, start, params["ckpt_step"] + 1, clock)
    info = {"framework": "torch " + torch.__version__, "checkpoint": "handwritten.pt"}
    return resume_result(params, data, clock, step, info)


CONTENDERS = {
    "setup-handwritten": setup_handwritten,
    "setup-ember": partial(setup_trainer, "ember"),
    "setup-lightning": partial(setup_trainer, "lightning"),
    "handwritten": resume_handwritten,
    "ember": partial(resume_trainer, "ember"),
    "lightning": partial(resume_trainer, "lightning"),
}
