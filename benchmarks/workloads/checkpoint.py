"""Workload 6a: save and load time of a large checkpoint (model weights + Adam state).

params: width, depth (a stack of `depth` Linear(width, width) layers; 2500 x 4 is ~25M parameters),
batch_size. Each contender takes one optimizer step so Adam's state exists, then times one save
and one load of the resulting checkpoint. Files are written under the child's workdir (same disk
as a run folder) and deleted afterwards; loads read a file the OS just wrote, so they come from
the page cache in every contender alike.
"""

import os
import time

import torch
from torch import nn

from benchmarks.common import BARE, framework


def big_model(width, depth):
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


def one_batch_loader(params):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(params["batch_size"], params["width"], generator=g)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=params["batch_size"]
    )


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def file_mb(path):
    return os.path.getsize(path) / 2**20


def plain_state(params):
    """The model after one Adam step, and {state_dict, optimizer_states} as a plain dict."""
    torch.manual_seed(0)
    model = big_model(params["width"], params["depth"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    (x,) = next(iter(one_batch_loader(params)))
    model(x).square().mean().backward()
    optimizer.step()
    return model, {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}


def run_torch(params, workdir):
    """torch.save / torch.load(weights_only=True) of {state_dict, optimizer state}: the floor."""
    model, state = plain_state(params)
    path = os.path.join(workdir, "plain.pt")
    _, save_s = timed(torch.save, state, path)
    size = file_mb(path)
    _, load_s = timed(torch.load, path, map_location="cpu", weights_only=True)
    os.remove(path)
    return {
        "save_s": save_s,
        "load_s": load_s,
        "file_mb": size,
        "params": sum(p.numel() for p in model.parameters()),
        "info": {"framework": "torch " + torch.__version__},
    }


def module_class(base, width, depth):
    class Big(base):
        def __init__(self):
            super().__init__()
            self.net = big_model(width, depth)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return self.net(x).square().mean()

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Big


def fit_one_step(fw, params):
    torch.manual_seed(0)
    model = module_class(fw.Module, params["width"], params["depth"])()
    trainer = fw.Trainer(max_steps=1, **BARE)
    trainer.fit(model, one_batch_loader(params))
    return model, trainer


def run_ember(params, workdir):
    """trainer.save_checkpoint + ember.checkpoint.load_checkpoint; also ember's atomic
    save_checkpoint of the exact dict run_torch saves (what atomicity costs over torch.save)."""
    import ember.checkpoint

    fw = framework("ember")
    model, trainer = fit_one_step(fw, params)
    path = os.path.join(workdir, "trainer.ckpt")
    _, save_s = timed(trainer.save_checkpoint, path)
    size = file_mb(path)
    _, load_s = timed(ember.checkpoint.load_checkpoint, path)
    os.remove(path)

    _, state = plain_state(params)
    plain_path = os.path.join(workdir, "plain.pt")
    _, atomic_save_s = timed(ember.checkpoint.save_checkpoint, state, plain_path)
    os.remove(plain_path)
    return {
        "save_s": save_s,
        "load_s": load_s,
        "atomic_save_plain_s": atomic_save_s,
        "file_mb": size,
        "params": sum(p.numel() for p in model.parameters()),
        "info": {"framework": f"ember {fw.version}"},
    }


def run_lightning(params, workdir):
    """Lightning's trainer.save_checkpoint, loaded by the function Lightning's own restore calls
    (fsspec open + torch.load; with weights_only unset, Lightning loads with weights_only=False)."""
    from lightning.fabric.utilities.cloud_io import _load as lightning_load

    fw = framework("lightning")
    model, trainer = fit_one_step(fw, params)
    path = os.path.join(workdir, "trainer.ckpt")
    _, save_s = timed(trainer.save_checkpoint, path)
    size = file_mb(path)
    _, load_s = timed(lightning_load, path, map_location="cpu")
    os.remove(path)
    return {
        "save_s": save_s,
        "load_s": load_s,
        "file_mb": size,
        "params": sum(p.numel() for p in model.parameters()),
        "info": {"framework": f"lightning {fw.version}"},
    }


CONTENDERS = {
    "torch": run_torch,
    "ember": run_ember,
    "lightning": run_lightning,
}
