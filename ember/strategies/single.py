"""The strategy interface, and the single-device strategy."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

import torch


class Strategy:
    """What the Trainer asks of the process group: devices, reductions, barriers, who writes files.

    A distributed strategy overrides these; the defaults are those of one process.
    """

    root_device = torch.device("cpu")
    world_size = 1
    global_rank = 0
    local_rank = 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    def launch(self, trainer: Any, entry: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """Run a Trainer entry point (fit, validate, test, predict) here; strategy='ddp_spawn' runs it in
        new processes instead."""
        return entry(trainer, *args, **kwargs)

    def setup_environment(self) -> None:
        """Start processes / the process group (nothing to do for one device)."""

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move the module to its device; a DDP strategy wraps it here."""
        return module.to(self.root_device)

    def prepare_train_loader(self, loader: Any, seed: int) -> Any:
        """Hook for a distributed sampler; ember's resumable sampler is swapped in by the Trainer."""
        return loader

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        return tensor

    def reduce_bool(self, flag: bool) -> bool:
        """True if any process says True (used for should_stop)."""
        return flag

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass

    def all_gather_object(self, obj: Any) -> list[Any]:
        """`obj` of every rank, by rank."""
        return [obj]

    def training_step(self, module: torch.nn.Module, *args: Any) -> Any:
        """Run the module's training_step (a DDP strategy runs it through DistributedDataParallel)."""
        return module.training_step(*args)

    def no_sync(self) -> Any:
        """A context in which backward does not reduce gradients across ranks (inside an accumulation
        window); nothing to do on one process."""
        return contextlib.nullcontext()

    def shard(self) -> tuple[int, int]:
        """(rank, world size) for splitting the data."""
        return 0, 1

    def failure(self, err: BaseException) -> BaseException | None:
        """The error to raise instead of `err` when `err` is another rank's failure seen by this one."""
        return None

    def agree_on_stopping(self, should_stop: bool, signalled: bool) -> tuple[bool, bool]:
        """(should_stop, a signal was received) as every process sees them: True if any says so."""
        return should_stop, signalled

    def share_logger_identity(self, loggers: list[Any]) -> None:
        """Make every process's loggers name rank 0's run (one version folder, one run id)."""

    def on_exception(self, err: BaseException) -> None:
        """A stage failed in this process."""

    def teardown(self) -> None:
        pass


def launched(entry: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a Trainer entry point: the call goes through `trainer.strategy.launch`, which runs it here,
    or (strategy='ddp_spawn') in new processes that receive the Trainer and the arguments by pickling."""

    @functools.wraps(entry)
    def call(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        return trainer.strategy.launch(trainer, entry, args, kwargs)

    return call


class SingleDevice(Strategy):
    """One process on one device."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.root_device = torch.device(device)
