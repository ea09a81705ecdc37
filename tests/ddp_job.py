"""The job of the DDP tests: one script, started once (ember starts the other rank) or by torchrun.

    python tests/ddp_job.py ROOT [--devices N] [--batch B] [--fail raise|sleep|kill --fail-rank R --fail-step S]
                                 [--timeout SECONDS] [--resume] [--kill-step S] [--stop-rank R] [--shuffle]
                                 [--torchmetrics] [--spawn] [--accelerator gpu] [--ddp]

Writes ROOT/result-rank<R>.json (global_step, callback metrics, rank, world size) and ROOT/weights.pt
(rank 0; with --spawn the calling process writes both, from what came back). Prints `pid <rank> <pid>` at
start and in setup so the test can check that no process is left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ember  # noqa: E402
from ember.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from ember.strategies import DDPStrategy  # noqa: E402


def data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) > 0).long()
    return TensorDataset(x, y)


class Net(ember.Module):
    def __init__(self, fail: str | None = None, fail_rank: int = -1, fail_step: int = -1, stop_rank: int = -1,
                 torchmetrics: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.fail, self.fail_rank, self.fail_step, self.stop_rank = fail, fail_rank, fail_step, stop_rank
        self.train_acc = self.val_acc = None
        self.spawned = False
        if torchmetrics:  # imported only when asked: it adds a second to every process's start
            from torchmetrics.classification import MulticlassAccuracy

            self.train_acc = MulticlassAccuracy(2, average="micro")
            self.val_acc = MulticlassAccuracy(2, average="micro")

    def setup(self, stage):  # the ranks strategy='ddp_spawn' starts say who they are (the test cannot see them)
        if self.spawned:
            print(f"pid {self.global_rank} {os.getpid()}", flush=True)

    def training_step(self, batch, batch_idx):
        if self.global_rank == self.fail_rank and self.global_step == self.fail_step:
            print(f"failing at {time.time():.3f}", flush=True)  # the test times the others' exit from here
            if self.fail == "raise":
                raise ValueError(f"planned failure on rank {self.global_rank} at step {self.global_step}")
            if self.fail == "sleep":
                time.sleep(3600)
            if self.fail == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        self.log("seen", float(len(x)), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        self.log("rank_max", float(self.global_rank), on_step=False, on_epoch=True, reduce_fx="max",
                 sync_dist=True)
        # values of the data, so that one process and two ranks must agree on each reduction
        for fx in ("sum", "max", "min"):
            self.log(f"x_{fx}", getattr(x[:, 0], fx)(), on_step=False, on_epoch=True, reduce_fx=fx, sync_dist=True)
        self.log("x_mean", x[:, 0].mean(), on_step=False, on_epoch=True, sync_dist=True)
        if self.global_rank == 0:  # logged by rank 0 alone: rank_zero_only keeps it out of the reductions
            self.log("rank0_only", 7.0, on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)
        if self.train_acc is not None:  # a torchmetrics Metric syncs itself (its own dist_sync) in compute
            self.train_acc(logits.argmax(1), y)
            self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        if self.val_acc is not None:
            self.val_acc(logits.argmax(1), y)
            self.log("val_acc", self.val_acc)
        # the value only rank `stop_rank` sees as worse: its EarlyStopping decides alone
        bad = 100.0 * self.current_epoch if self.global_rank == self.stop_rank else 0.0
        self.log("val_loss", loss + bad)
        self.log("val_seen", float(len(x)), reduce_fx="sum", sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Killer(ember.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fail", default=None)
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--fail-step", type=int, default=-1)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-step", type=int, default=-1)
    parser.add_argument("--stop-rank", type=int, default=-1)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--torchmetrics", action="store_true")
    parser.add_argument("--spawn", action="store_true", help="strategy='ddp_spawn'")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--ddp", action="store_true", help="strategy='ddp' even on one device")
    args = parser.parse_args()
    root = Path(args.root)
    print(f"pid {os.environ.get('RANK', '0')} {os.getpid()}", flush=True)

    ember.seed_everything(0, verbose=False)
    model = Net(args.fail, args.fail_rank, args.fail_step, args.stop_rank, args.torchmetrics)
    model.spawned = args.spawn
    strategy = "ddp_spawn" if args.spawn else "ddp" if args.ddp else "auto"
    if args.timeout is not None:
        strategy = DDPStrategy(timeout=timedelta(seconds=args.timeout))
    callbacks = [ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=1)]
    if args.kill_step >= 0:
        callbacks.append(Killer(args.kill_step))
    if args.stop_rank >= 0:
        callbacks.append(EarlyStopping("val_loss", patience=0))
    trainer = ember.Trainer(accelerator=args.accelerator, devices=args.devices, strategy=strategy, max_epochs=args.epochs,
                            default_root_dir=root, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, log_every_n_steps=1, callbacks=callbacks, deterministic=True)
    train = DataLoader(data(), batch_size=args.batch, shuffle=args.shuffle)
    val = DataLoader(data(20), batch_size=4)
    trainer.fit(model, train, val, ckpt_path="last" if args.resume else None)
    result = {"rank": trainer.global_rank, "world_size": trainer.world_size, "global_step": trainer.global_step,
              "epoch": trainer.current_epoch, "threads": torch.get_num_threads(),
              "metrics": {k: v.item() for k, v in trainer.callback_metrics.items()},
              "log_dir": trainer.log_dir, "device": str(trainer.strategy.root_device),
              "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
              "best_model_path": trainer.checkpoint_callback.best_model_path}
    if args.spawn:  # a second launch, of the best checkpoint the first one brought back
        result["validated"] = trainer.validate(dataloaders=val, ckpt_path="best", verbose=False)[0]
    (root / f"result-rank{trainer.global_rank}.json").write_text(json.dumps(result))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), root / "weights.pt")


if __name__ == "__main__":
    main()
