"""strategy='ddp_spawn': DDP whose processes are started by `torch.multiprocessing` (start method spawn).

The process that calls `fit` (or validate/test/predict) starts N new Python processes; each receives the
Trainer, the module, the datamodule and the loaders by pickling, joins the process group and runs the
stage as a rank of `DDPStrategy`. When they are done, rank 0's results come back into the caller's
objects, as in Lightning: the module's trained weights, the loop counters (global_step, current_epoch),
`callback_metrics` / `logged_metrics`, the ModelCheckpoint paths and scores, the logger's version, and
the return value of the call. Nothing else a rank changed reaches the caller (an attribute set on the
module, an optimizer's state): use strategy='ddp' for that, where the script itself is each rank.

A rank that fails ends every rank as with strategy='ddp'; the caller then raises `RankFailure` naming it.
"""

from __future__ import annotations

import inspect
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ember.strategies.ddp import _PARENT_ENV, DDPStrategy, RankFailure, _free_port, check_nodes

_RESULT = "rank0.pt"


class DDPSpawnStrategy(DDPStrategy):
    """DDP on N processes started by torch.multiprocessing (spawn), which receive the module by pickling.

    Args: those of `DDPStrategy`, and `start_method` ('spawn', the only one safe with CUDA and threads).

    Example:
        >>> trainer = ember.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2)
        >>> trainer.fit(model, train_loader)  # model holds rank 0's trained weights afterwards
    """

    def __init__(self, *args: Any, start_method: str = "spawn", **kwargs: Any) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"DDPSpawnStrategy(start_method={start_method!r}): expected 'spawn' or 'forkserver' "
                             "(a forked process inherits the caller's threads and CUDA state, which can deadlock).")
        super().__init__(*args, **kwargs)
        self.start_method = start_method
        self._in_rank = False  # True in the processes it started

    def launch(self, trainer: Any, entry: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """Run the entry point in N new processes and bring rank 0's results back into the caller's objects."""
        if self._in_rank or "RANK" in os.environ:  # a started rank, or a process of torchrun: run it here
            return entry(trainer, *args, **kwargs)
        bound = inspect.signature(entry).bind(trainer, *args, **kwargs)
        check_nodes(self.num_nodes)
        node_rank = int(os.environ.get("NODE_RANK", 0))
        env = {"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
               "MASTER_PORT": os.environ.get("MASTER_PORT", str(_free_port())),
               "WORLD_SIZE": str(self.num_processes * self.num_nodes), "LOCAL_WORLD_SIZE": str(self.num_processes),
               "NODE_RANK": str(node_rank), _PARENT_ENV: str(os.getpid())}
        payload = _pickled(trainer, entry.__name__, args, kwargs, bound.arguments)
        folder = tempfile.mkdtemp(prefix="ember-ddp-spawn-")
        try:
            context = self._start(payload, env, folder)
            self._wait(context, node_rank)
            # written a moment ago by rank 0 into this private folder: not a checkpoint from elsewhere
            result = torch.load(Path(folder) / _RESULT, weights_only=False)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _take_results(trainer, bound.arguments.get("model"), result)
        return result["returned"]

    def _start(self, payload: bytes, env: dict[str, str], folder: str) -> Any:
        import torch.multiprocessing as mp

        return mp.start_processes(_rank_main, args=(payload, env, folder), nprocs=self.num_processes, join=False,
                                  start_method=self.start_method)

    def _wait(self, context: Any, node_rank: int) -> None:
        """Wait for the ranks; when one fails (the others then fail within the timeout), stop them all."""
        import torch.multiprocessing as mp

        try:
            while not context.join(timeout=1.0):
                pass
        except mp.ProcessExitedException as err:
            rank = node_rank * self.num_processes + err.error_index
            how = f"was killed by {err.signal_name}" if err.signal_name else f"exited with code {err.exit_code}"
            raise RankFailure(f"Trainer(strategy='ddp_spawn'): rank {rank} {how} (its error, if it raised one, is "
                              f"printed above with the prefix [rank {rank}]); every rank was stopped.") from None
        except mp.ProcessRaisedException as err:
            rank = node_rank * self.num_processes + err.error_index
            raise RankFailure(f"Trainer(strategy='ddp_spawn'): rank {rank} raised an error; "
                              f"every rank was stopped. Its error:\n{err}") from None
        finally:
            for process in context.processes:  # the others are stopped when one fails
                if process.is_alive():
                    process.terminate()
                process.join(5.0)
                if process.is_alive():
                    process.kill()
                    process.join()


def _pickled(trainer: Any, name: str, args: tuple, kwargs: dict[str, Any], named: dict[str, Any]) -> bytes:
    """What each rank receives, pickled once here. Plain pickle, so each rank gets its own copy of every
    tensor (torch.multiprocessing's pickler would put the module's parameters in memory shared by all the
    ranks, and each rank's optimizer step would move the same weights: N times the step)."""
    try:
        return pickle.dumps((trainer, name, args, kwargs))
    except Exception:  # pickle raises PicklingError, TypeError, AttributeError...
        _check_picklable({**{k: v for k, v in named.items() if k != "self"}, "trainer": trainer})
        raise


def _rank_main(local_rank: int, payload: bytes, env: dict[str, str], folder: str) -> None:
    """One started rank: join the group, run the entry point, and (rank 0) write what goes back."""
    trainer, name, args, kwargs = pickle.loads(payload)
    rank = int(env["NODE_RANK"]) * int(env["LOCAL_WORLD_SIZE"]) + local_rank
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(local_rank))
    strategy = trainer.strategy
    strategy._in_rank = True
    strategy.global_rank, strategy.local_rank = rank, local_rank
    returned = getattr(trainer, name)(*args, **kwargs)
    if rank == 0:
        model = trainer.lightning_module
        result = {"returned": returned, "interrupted": trainer.interrupted,
                  "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                  "loops": trainer.fit_state.state_dict(), "loggers": trainer._logger_states(),
                  "callbacks": [(c.state_key, c.state_dict()) for c in trainer.callbacks],
                  "callback_metrics": _to_cpu(trainer.callback_metrics),
                  "logged_metrics": _to_cpu(trainer.logged_metrics)}
        torch.save(result, Path(folder) / _RESULT)


def _take_results(trainer: Any, model: Any, result: dict[str, Any]) -> None:
    """Rank 0's results into the caller's Trainer and module."""
    model = model if model is not None else trainer.lightning_module
    if model is not None:
        model.load_state_dict(result["state_dict"])
        trainer.lightning_module = model
    trainer.interrupted = result["interrupted"]
    trainer.fit_state.load_state_dict(result["loops"])
    trainer._load_logger_identity(result["loggers"])
    trainer.log_collector.callback_metrics.update(result["callback_metrics"])
    trainer.log_collector.logged_metrics.update(result["logged_metrics"])
    states = dict(result["callbacks"])
    for callback in trainer.callbacks:
        state = states.get(callback.state_key)
        if state is None:
            continue
        if getattr(callback, "dirpath", "") is None and "dirpath" in state:
            callback.dirpath = state["dirpath"]  # chosen in the rank's setup (the logger's folder)
        callback.load_state_dict(state)


def _to_cpu(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}


def _check_picklable(objects: dict[str, Any]) -> None:
    """Refuse, before any process starts, an argument that the started processes cannot receive."""
    for name, value in objects.items():
        try:
            pickle.dumps(value)
        except Exception as err:  # pickle raises PicklingError, TypeError, AttributeError...
            path = _unpicklable_part(value, name) or name
            raise TypeError(
                f"Trainer(strategy='ddp_spawn') sends {name!r} to each process by pickling, and {path} cannot be "
                f"pickled ({type(err).__name__}: {err}). Define its classes and functions at the top level of a "
                "module (no lambdas or local classes), leave out open files, locks and connections, or use "
                "strategy='ddp', which starts the script once per rank and pickles nothing.") from None


def _unpicklable_part(value: Any, path: str, depth: int = 0) -> str | None:
    """The deepest attribute / item of `value` that cannot be pickled, as a path (`model.head.fn`)."""
    if depth > 8:
        return None
    if isinstance(value, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = []
        for key, attribute in vars(value).items():
            if key in ("_modules", "_parameters", "_buffers") and isinstance(attribute, dict):
                items += [(f"{path}.{k}", v) for k, v in attribute.items()]  # a torch Module's children
            else:
                items.append((f"{path}.{key}", attribute))
    else:
        return None
    for child_path, child in items:
        try:
            pickle.dumps(child)
        except Exception:
            return _unpicklable_part(child, child_path, depth + 1) or child_path
    return None


__all__ = ["DDPSpawnStrategy"]
