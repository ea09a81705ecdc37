"""DDPStrategy: one process per device, on torch.distributed, started by ember or by torchrun.

How the processes start:

- `python train.py` with `Trainer(strategy="ddp", devices=N)`: the first `fit` (or validate/test/predict)
  starts N-1 more processes running the same command (`python train.py ...` or `python -m pkg.mod ...`)
  with the rank in the environment, as Lightning does; this process is rank 0. Each process runs the
  script from the top, so each builds its Trainer and model and joins the group at the same call.
- `torchrun --nproc-per-node=N train.py` (or several machines with `--nnodes`, `--node-rank`,
  `--rdzv-endpoint`, or MASTER_ADDR/MASTER_PORT): the rank is in the environment already; the process
  joins the group.

Failure never hangs: every collective has the strategy's `timeout` (5 minutes by default: long enough for
rank 0 to write a large checkpoint or run a validation the others wait for, a sixth of torch's 30); when
one fails, the rank says which rank stopped answering (a roll call on the group's store, whose server
runs in rank 0's background thread) and exits. The launching process kills the processes it started
when it fails or exits; a started process whose parent dies is killed by the kernel (PR_SET_PDEATHSIG),
or exits when it sees that its parent changed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ember.strategies.single import Strategy

log = logging.getLogger("ember")

DEFAULT_TIMEOUT = timedelta(minutes=5)
_PARENT_ENV = "EMBER_DDP_PARENT_PID"
_JOB_ENV = "EMBER_DDP_HYDRA_JOB"  # the run folder of the Hydra job whose ranks this process started
# a Hydra app whose sys.argv[0] is not a script (the `ember fit` command) names the command that runs one
# of its jobs, as a JSON list (e.g. ["python", "-m", "ember", "fit", "--config-dir", "/abs/configs"])
HYDRA_ENTRY_ENV = "EMBER_HYDRA_ENTRY"


class RankFailure(RuntimeError):
    """Another process of the group failed, died or stopped answering; this one stops too."""


class DDPStrategy(Strategy):
    """Distributed data parallel on torch.distributed: the model wrapped in DistributedDataParallel,
    the training data split by rank, logged values reduced where asked (`sync_dist=True`).

    Args:
        timeout: how long a collective waits for the other ranks before this rank gives up (default 5 min).
        find_unused_parameters: passed to DistributedDataParallel (for models whose forward skips some
            parameters).
        process_group_backend: 'gloo' (CPU) or 'nccl' (CUDA); default: nccl on CUDA, gloo on the CPU.
        **ddp_kwargs: other DistributedDataParallel arguments (e.g. `static_graph=True`).

    Example:
        >>> trainer = ember.Trainer(strategy=DDPStrategy(timeout=timedelta(seconds=60)), devices=2)
    """

    def __init__(self, timeout: timedelta | None = None, find_unused_parameters: bool = False,
                 process_group_backend: str | None = None, accelerator: str = "cpu", num_devices: int = 1,
                 num_nodes: int = 1, device_indices: list[int] | None = None, **ddp_kwargs: Any) -> None:
        if timeout is not None and not isinstance(timeout, timedelta):
            raise TypeError(f"DDPStrategy(timeout={timeout!r}): expected a datetime.timedelta, e.g. "
                            "timedelta(seconds=60).")
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.find_unused_parameters = find_unused_parameters
        self.ddp_kwargs = ddp_kwargs
        self.accelerator = accelerator
        self.num_processes = num_devices
        self.num_nodes = num_nodes
        self.device_indices = device_indices or list(range(num_devices))
        self.process_group_backend = process_group_backend or ("nccl" if accelerator == "cuda" else "gloo")
        self.global_rank, self.local_rank, self.node_rank = _ranks_from_environment()
        self.world_size = int(os.environ.get("WORLD_SIZE", num_devices * num_nodes))
        self.root_device = self._device()
        self._children: list[subprocess.Popen] = []
        self._ready = False
        self._wrapped: Any = None

    def configure(self, accelerator: str, num_devices: int, num_nodes: int, device_indices: list[int]) -> None:
        """Take the Trainer's accelerator / devices / num_nodes (a DDPStrategy made by the user has none)."""
        if self._ready:
            return
        self.accelerator, self.num_processes, self.num_nodes = accelerator, num_devices, num_nodes
        self.device_indices = device_indices
        if self.process_group_backend == "gloo" and accelerator == "cuda":
            self.process_group_backend = "nccl"
        self.world_size = int(os.environ.get("WORLD_SIZE", num_devices * num_nodes))
        self.root_device = self._device()

    @property
    def device_ids(self) -> list[int]:
        return self.device_indices

    def _device(self) -> torch.device:
        if self.accelerator == "cuda":
            return torch.device("cuda", self.device_indices[self.local_rank % len(self.device_indices)])
        return torch.device("cpu")

    # --- starting and joining the group -----------------------------------------------------------

    def setup_environment(self) -> None:
        """Start the other local ranks (unless torchrun or ember did), then join the process group."""
        if self._ready:
            return
        if dist.is_available() and dist.is_initialized():
            if not _new_hydra_job():
                self._ready = True  # fit then test, or a second Trainer: the ranks go on in the same group
                return
            # a Hydra sweep's next job in this process: the ranks of the last job have ended with it
            dist.destroy_process_group()
            for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
                os.environ.pop(name, None)
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            self._launch()
        else:
            _die_with_parent()
        self.global_rank, self.local_rank, self.node_rank = _ranks_from_environment()
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.root_device = self._device()
        if self.accelerator == "cuda":
            torch.cuda.set_device(self.root_device)
        else:
            # the ranks share the machine's cores: without this each takes all of them (2-5x oversubscribed)
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.num_processes))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local, 1)))
        dist.init_process_group(self.process_group_backend, rank=self.global_rank, world_size=self.world_size,
                                timeout=self.timeout)
        self._ready = True

    def _launch(self) -> None:
        """This process becomes local rank 0; start local ranks 1..N-1 running the same command."""
        check_nodes(self.num_nodes)
        command = _this_command()
        node_rank = int(os.environ.get("NODE_RANK", 0))
        env = dict(os.environ)
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", str(_free_port()))
        env.update(WORLD_SIZE=str(self.num_processes * self.num_nodes), LOCAL_WORLD_SIZE=str(self.num_processes),
                   NODE_RANK=str(node_rank), **{_PARENT_ENV: str(os.getpid())})
        os.environ.update(MASTER_ADDR=env["MASTER_ADDR"], MASTER_PORT=env["MASTER_PORT"],
                          WORLD_SIZE=env["WORLD_SIZE"], LOCAL_WORLD_SIZE=env["LOCAL_WORLD_SIZE"],
                          NODE_RANK=env["NODE_RANK"], RANK=str(node_rank * self.num_processes), LOCAL_RANK="0")
        hydra = _hydra_job()
        os.environ[_JOB_ENV] = hydra[2] if hydra else ""
        for local in range(1, self.num_processes):
            rank_env = dict(env, RANK=str(node_rank * self.num_processes + local), LOCAL_RANK=str(local))
            # from the folder this program started in (Hydra's job.chdir moved this process): `python -m
            # pkg.mod` finds its package there
            self._children.append(subprocess.Popen(command, env=rank_env, cwd=_start_folder()))
        atexit.register(self._stop_children, 60.0)  # at exit, the started ranks get a minute to finish

    # --- the model and the data -------------------------------------------------------------------

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move the module to this rank's device and wrap its training step in DistributedDataParallel."""
        module.to(self.root_device)
        if any(p.requires_grad for p in module.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
            self._wrapped = DistributedDataParallel(_TrainingStep(module), device_ids=device_ids,
                                                    find_unused_parameters=self.find_unused_parameters,
                                                    **self.ddp_kwargs)
        return module

    def training_step(self, module: torch.nn.Module, *args: Any) -> Any:
        """Run the module's training_step through DistributedDataParallel (so its gradients are reduced)."""
        if self._wrapped is None:
            return module.training_step(*args)
        return self._wrapped(*args)

    def no_sync(self) -> Any:
        """Inside an accumulation window: backward without the gradient all-reduce."""
        if self._wrapped is None:
            return contextlib.nullcontext()
        return self._wrapped.no_sync()

    def shard(self) -> tuple[int, int]:
        """(rank, world size) for splitting the data."""
        return self.global_rank, self.world_size

    # --- talking to the other ranks ----------------------------------------------------------------

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        """`tensor` reduced over the ranks ('mean', 'sum', 'max', 'min'); every rank gets the result."""
        op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
              "min": dist.ReduceOp.MIN}[reduce_fx]
        result = tensor.detach().clone().to(self._collective_device())
        self._guarded(dist.all_reduce, result, op=op)
        if reduce_fx == "mean":
            result = result / self.world_size
        return result.to(tensor.device)

    def reduce_bool(self, flag: bool) -> bool:
        """True on every rank if any rank says True (should_stop)."""
        value = torch.tensor([1.0 if flag else 0.0], device=self._collective_device())
        self._guarded(dist.all_reduce, value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        box = [obj]
        self._guarded(dist.broadcast_object_list, box, src=src)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        gathered: list[Any] = [None] * self.world_size
        self._guarded(dist.all_gather_object, gathered, obj)
        return gathered

    def barrier(self, name: str | None = None) -> None:
        self._guarded(dist.barrier)

    def _collective_device(self) -> torch.device:
        return self.root_device if self.process_group_backend == "nccl" else torch.device("cpu")

    def _guarded(self, collective: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return collective(*args, **kwargs)
        except RuntimeError as err:
            seen = self.failure(err)
            if seen is None:
                raise
            raise seen from None

    # --- failure ----------------------------------------------------------------------------------

    def agree_on_stopping(self, should_stop: bool, signalled: bool) -> tuple[bool, bool]:
        """Any rank's stop (or signal) stops every rank at the same batch: one small all-reduce per batch."""
        flags = self.reduce(torch.tensor([float(should_stop), float(signalled)]), "max")
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def share_logger_identity(self, loggers: list[Any]) -> None:
        for logger in loggers:
            identity = self.broadcast(logger.state_dict() if self.is_global_zero else None)
            if not self.is_global_zero:
                logger.load_state_dict(identity)

    def failure(self, err: BaseException) -> BaseException | None:
        """When a collective failed: the error naming the rank that stopped answering (a roll call)."""
        if not self.is_collective_error(err):
            return None
        silent = self._roll_call()
        who = ", ".join(f"rank {r}" for r in silent) if silent else "another rank"
        return RankFailure(f"[rank {self.global_rank}] {who} stopped answering (it failed, died or stalled for "
                           f"longer than the timeout of {self.timeout.total_seconds():g} s); stopping. "
                           f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")

    def is_collective_error(self, err: BaseException) -> bool:
        """A peer that closed its connection, or a collective that timed out (raised by torch.distributed)."""
        if isinstance(err, RankFailure):
            return False
        if isinstance(err, getattr(dist, "DistBackendError", ())):
            return True
        text = str(err).lower()
        return isinstance(err, RuntimeError) and any(word in text for word in (
            "gloo", "nccl", "connection closed", "connection reset", "timed out", "broken pipe"))

    def _roll_call(self, wait: float = 3.0) -> list[int]:
        """Ranks that do not answer on the group's store within `wait` seconds."""
        try:
            store = dist.distributed_c10d._get_default_store()
            key = f"ember/roll_call/{os.environ.get('MASTER_PORT', '')}"
            store.set(f"{key}/{self.global_rank}", "here")
            deadline = time.monotonic() + wait
            missing = list(range(self.world_size))
            while missing and time.monotonic() < deadline:
                missing = [r for r in missing if not store.check([f"{key}/{r}"])]
                time.sleep(0.1)
            return missing
        except Exception:  # the store lives in rank 0: if it cannot be reached, rank 0 is the one
            return [0] if self.global_rank != 0 else []

    def on_exception(self, err: BaseException) -> None:
        """A stage failed in this process: stop the processes this one started; in a started process,
        print the traceback once, with the rank, and exit (so the other ranks' collectives fail fast)."""
        if self._children:
            self._stop_children()
            return
        if os.environ.get(_PARENT_ENV) and self.world_size > 1:
            if isinstance(err, RankFailure):
                print(str(err), file=sys.stderr, flush=True)
            else:
                text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
                print(f"[rank {self.global_rank}] " + text.replace("\n", f"\n[rank {self.global_rank}] "),
                      file=sys.stderr, flush=True)
            os._exit(1)

    def _stop_children(self, grace: float = 5.0) -> None:
        children, self._children = self._children, []
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()



class _TrainingStep(torch.nn.Module):
    """What DistributedDataParallel wraps: its forward is the module's training_step, so DDP sees the
    forward it must prepare the gradient reduction for."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module.training_step(*args)


def _ranks_from_environment() -> tuple[int, int, int]:
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("GROUP_RANK", env.get("NODE_RANK", 0)))


def _this_command() -> list[str]:
    """The command that started this process, to start the other ranks with. Under Hydra, the other ranks
    run this job's overrides (not the whole sweep) in this job's run folder, writing no Hydra files of
    their own: one run folder per job."""
    module = _main_module()
    hydra = _hydra_job()
    if hydra is not None:
        entry, overrides, run_dir = hydra
        return [*entry, *overrides, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
                "hydra/job_logging=none", "hydra/hydra_logging=none"]
    if module:
        return [sys.executable, "-m", module, *sys.argv[1:]]
    script = sys.argv[0] if sys.argv else ""
    if not script or script == "-c" or not os.path.exists(script):
        raise RuntimeError(
            "Trainer(strategy='ddp') starts the other ranks by running this program's command again, and this "
            "process has none (an interactive session, a notebook or python -c). Run a script, start it with "
            "torchrun --nproc-per-node=N script.py, or use strategy='ddp_spawn'.")
    return [sys.executable, os.path.abspath(script), *sys.argv[1:]]


def _main_module() -> str | None:
    """The module this program was started as (`python -m package.module`), or None for a script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not spec.name or spec.name == "__main__":
        return None
    return spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name


def _hydra_job() -> tuple[list[str], list[str], str] | None:
    """(the command that runs a job of this app, this job's overrides, its run folder) when running inside
    a Hydra app, else None."""
    if "hydra" not in sys.modules:
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    config = HydraConfig.get()
    entry = os.environ.get(HYDRA_ENTRY_ENV)  # set by the `ember` command, whose argv[0] is no script
    if entry:
        command = json.loads(entry)
    else:
        module = _main_module()
        # argv[0] is relative to where the program started, not to the job's folder
        command = [sys.executable, "-m", module] if module else [
            sys.executable, os.path.join(config.runtime.cwd, sys.argv[0])]
    return command, list(config.overrides.task), config.runtime.output_dir


def _start_folder() -> str:
    """The working folder this program was started in (before a Hydra job changed it)."""
    if _hydra_job() is not None:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.cwd
    return os.getcwd()


def _new_hydra_job() -> bool:
    """Whether this process started ranks for a Hydra job, and now runs another job of the sweep."""
    started_for = os.environ.get(_JOB_ENV)
    hydra = _hydra_job()
    return bool(started_for) and hydra is not None and hydra[2] != started_for


def check_nodes(num_nodes: int) -> None:
    """Several machines: each must be told where rank 0 is."""
    if num_nodes > 1 and "MASTER_ADDR" not in os.environ:
        raise ValueError(f"Trainer(num_nodes={num_nodes}) needs to know where rank 0 is: start each machine "
                         "with torchrun (--nnodes, --node-rank, --rdzv-endpoint), or set MASTER_ADDR, MASTER_PORT "
                         "and NODE_RANK on every machine.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """A rank started by ember exits with its parent: the kernel kills it (Linux), else a watcher does."""
    parent = os.environ.get(_PARENT_ENV)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="ember-parent-watch").start()


__all__ = ["DDPStrategy", "RankFailure", "DEFAULT_TIMEOUT"]
