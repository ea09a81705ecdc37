"""What `self.log` collects: the latest step values, the epoch aggregates, and the metric dicts.

The hot path (`LogCollector.log`) stores detached tensors and never calls `.item()`: values reach the
loggers every `log_every_n_steps` and the progress bar a few times a second, and only then are they
read back to the host.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Mapping

import torch

from ember.aggregate import EpochAggregate

REDUCTIONS = ("mean", "sum", "max", "min")

# Per hook: (default on_step, default on_epoch). A hook not listed here may not log.
_STEP_HOOKS = ("training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward",
               "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")
_EPOCH_HOOKS = ("validation_step", "test_step", "on_validation_batch_start", "on_validation_batch_end",
                "on_test_batch_start", "on_test_batch_end", "on_train_start", "on_train_epoch_start",
                "on_train_epoch_end", "on_validation_start", "on_validation_end",
                "on_validation_epoch_start", "on_validation_epoch_end", "on_test_start", "on_test_end",
                "on_test_epoch_start", "on_test_epoch_end")
LOGGING_DEFAULTS: dict[str, tuple[bool, bool]] = {
    **{h: (True, False) for h in _STEP_HOOKS},
    **{h: (False, True) for h in _EPOCH_HOOKS},
}



def is_metric(value: Any) -> bool:
    """A torchmetrics Metric, recognised without importing torchmetrics."""
    return hasattr(value, "compute") and hasattr(value, "reset") and hasattr(value, "_forward_cache")


@dataclass
class _Key:
    """How one logged name is reported: fixed by its first `self.log` call in a stage.

    `suffix` is `/dataloader_idx_N` for a value logged while evaluation dataloader N of several runs; it
    goes after the `_step` / `_epoch` suffix, as in Lightning (`val_loss_epoch/dataloader_idx_0`).
    """

    name: str
    prog_bar: bool
    logger: bool
    on_step: bool
    on_epoch: bool
    reduce_fx: str
    sync_dist: bool
    suffix: str = ""
    dataloader_idx: int | None = None  # the evaluation dataloader that logged it (several of them)
    metric_attribute: str | None = None  # where the model holds the torchmetrics Metric logged

    def __post_init__(self) -> None:
        # the names it is reported under, made once (plain attributes: read on every self.log call)
        self.full_name = self.name + self.suffix
        self.step_name = f"{self.name}_step{self.suffix}" if self.on_epoch else self.full_name
        self.epoch_name = f"{self.name}_epoch{self.suffix}" if self.on_step else self.full_name


def parse_reduce_fx(name: str, reduce_fx: Any) -> str:
    """'mean', 'sum', 'max' or 'min' from what `self.log(reduce_fx=...)` was given: one of those names in any
    case, 'avg', or torch.mean / torch.sum / torch.max / torch.min or the builtins sum / max / min."""
    if isinstance(reduce_fx, str):
        found = {"avg": "mean"}.get(reduce_fx.lower(), reduce_fx.lower())
    else:
        found = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min", sum: "sum", max: "max",
                 min: "min"}.get(reduce_fx)
    if found not in REDUCTIONS:
        raise ValueError(f"self.log({name!r}, reduce_fx={reduce_fx!r}): expected one of {REDUCTIONS} or 'avg' "
                         "(any case), or torch.mean/sum/max/min, or the builtins sum/max/min.")
    return found


class _StageLog:
    """The keys, unsent step values and epoch aggregates of one stage (training, or evaluation)."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._step_values: dict[str, torch.Tensor] = {}  # latest on_step values not yet sent to loggers
        self._epoch: dict[str, EpochAggregate] = {}
        self._metrics: dict[str, Any] = {}  # torchmetrics objects logged on_epoch


class LogCollector:
    """Everything `self.log` records during a run, and the three metric dicts the Trainer exposes.

    - `callback_metrics`: what callbacks monitor (latest step values, then epoch values).
    - `logged_metrics`: what was last sent to the loggers.
    - `progress_bar_metrics`: the `prog_bar=True` values as Python floats (read on demand).
    """

    def __init__(self) -> None:
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.logged_metrics: dict[str, torch.Tensor] = {}
        self._prog_bar: dict[str, torch.Tensor] = {}
        self.hook: str | None = None  # the hook now running: set with `in_hook`
        self.dataloader_idx: int | None = None  # set when an eval stage has several dataloaders
        self.batch: Any = None
        self._batch_size: int | None = None
        self._warned_batch_size = False
        # training keeps its epoch aggregates while a validation runs in the middle of the epoch
        self._train, self._eval = _StageLog(), _StageLog()
        self._stage = self._train
        # set when there are several processes: the strategy that reduces `sync_dist=True` values across them
        self.strategy: Any = None

    def in_hook(self, name: str | None) -> "_InHook":
        """`with logs.in_hook("training_step"):` -- what is logged inside takes that hook's defaults; the
        previous hook is restored on the way out (also when the hook raises)."""
        return _InHook(self, name)

    def clear_metrics(self) -> None:
        """Forget every metric shown so far (after the sanity check, whose values are not results)."""
        self.callback_metrics.clear()
        self.logged_metrics.clear()
        self._prog_bar.clear()

    def use(self, stage: str) -> None:
        """Collect into the training log ('train') or the evaluation log ('eval')."""
        self._stage = self._train if stage == "train" else self._eval

    def reset_stage(self) -> None:
        """Forget the keys and epoch aggregates of the current stage: a new epoch starts."""
        self._stage.__init__()

    def start_batch(self, batch: Any) -> None:
        self.batch = batch
        self._batch_size = None

    def log(self, name: str, value: Any, prog_bar: bool = False, logger: bool = True,
            on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: str | Callable = "mean",
            sync_dist: bool = False, batch_size: int | None = None, add_dataloader_idx: bool = True,
            rank_zero_only: bool = False, metric_attribute: str | None = None) -> None:
        """Record one value (see `Module.log`). `rank_zero_only=True`: the value is logged by process 0
        alone, so it is never reduced across processes (which would wait for the others)."""
        hook = self.hook
        defaults = LOGGING_DEFAULTS.get(hook) if hook else None
        if defaults is None:
            raise RuntimeError(
                f"self.log({name!r}, ...) was called from {hook or 'outside a running Trainer stage'}, "
                "where logging is not allowed. Log from training_step, validation_step, test_step or "
                f"the batch/epoch hooks; allowed hooks: {', '.join(sorted(LOGGING_DEFAULTS))}."
            )
        suffix = ""
        if self.dataloader_idx is not None and add_dataloader_idx:
            if "/dataloader_idx_" in name:
                raise ValueError(f"self.log({name!r}, ...): the name already holds a dataloader index, which "
                                 "ember adds itself with several dataloaders; log the name without it, or pass "
                                 "add_dataloader_idx=False to use names of your own.")
            suffix = f"/dataloader_idx_{self.dataloader_idx}"
        key = self._stage._keys.get(name + suffix)
        if key is None:
            key = self._new_key(name, prog_bar, logger, on_step, on_epoch, reduce_fx,
                                sync_dist and not rank_zero_only, defaults, suffix, self.dataloader_idx,
                                metric_attribute)
            self._stage._keys[key.full_name] = key
        name = key.full_name
        if type(value) is torch.Tensor and value.numel() == 1:
            value = value.detach()  # (the common case of _to_scalar, inline)
        elif is_metric(value):
            self._log_metric(key, value)
            return
        else:
            value = self._to_scalar(name, value)
        if key.on_step:
            self._record_step(key, value)
        if key.on_epoch:
            agg = self._stage._epoch.get(name)
            if agg is None:
                agg = self._stage._epoch[name] = EpochAggregate(key.reduce_fx)
            if key.reduce_fx == "mean":
                agg.add(value, self._weight(batch_size))
            else:
                agg.add(value, 1.0)

    @staticmethod
    def _new_key(name, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist, defaults, suffix, dataloader_idx,
                 metric_attribute) -> _Key:
        key = _Key(name, bool(prog_bar), bool(logger), defaults[0] if on_step is None else bool(on_step),
                   defaults[1] if on_epoch is None else bool(on_epoch), parse_reduce_fx(name, reduce_fx),
                   bool(sync_dist), suffix, dataloader_idx, metric_attribute)
        if not key.on_step and not key.on_epoch:
            raise ValueError(f"self.log({name!r}, on_step=False, on_epoch=False) records nothing; "
                             "set on_step=True, on_epoch=True, or both.")
        return key

    @staticmethod
    def _to_scalar(name: str, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"self.log({name!r}, value) expects a scalar, got a tensor of shape "
                    f"{tuple(value.shape)}. Reduce it first (value.mean()), or log a torchmetrics Metric.")
            return value.detach()
        if isinstance(value, (bool, int, float)):
            return torch.tensor(float(value))
        if hasattr(value, "item") and getattr(value, "size", 2) == 1:  # numpy scalars
            return torch.tensor(float(value.item()))
        if isinstance(value, Mapping):
            raise TypeError(f"self.log({name!r}, value) got a dict; use self.log_dict(values) for several "
                            "values at once.")
        raise TypeError(f"self.log({name!r}, value) expects a number, a scalar tensor or a torchmetrics "
                        f"Metric, got {type(value).__name__}.")

    def _weight(self, batch_size: int | None) -> float:
        if batch_size is not None:
            return float(batch_size)
        if self.batch is None:  # logged outside a batch (an epoch hook): one value, nothing to weight
            return 1.0
        if self._batch_size is None:
            self._batch_size = _infer_batch_size(self.batch)
            if self._batch_size is None:
                self._batch_size = 1
                if not self._warned_batch_size:
                    self._warned_batch_size = True
                    warnings.warn("self.log could not infer the batch size from the batch (no tensor in it), "
                                  "so epoch means weight every step equally; pass batch_size=... to "
                                  "self.log to weight by batch size.", stacklevel=3)
        return float(self._batch_size)

    def _record_step(self, key: _Key, value: torch.Tensor) -> None:
        """Keep this step's value for the loggers, the callbacks and the progress bar. (Callbacks see the
        step values of training only: in validation and test they see the epoch values, as in Lightning.)"""
        stage = self._stage
        if key.logger:
            stage._step_values[key.step_name] = value
        if stage is self._train:
            self.callback_metrics[key.full_name] = value
            if key.logger:  # refreshed every batch, whether or not a row is written now (as in Lightning)
                self.logged_metrics[key.step_name] = value
            if key.on_epoch:
                self.callback_metrics[key.step_name] = value
        if key.prog_bar:
            self._prog_bar[key.step_name] = value

    def _log_metric(self, key: _Key, metric: Any) -> None:
        if key.on_step:
            value = metric._forward_cache  # what the metric returned for this batch
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                self._record_step(key, value.detach())
        if key.on_epoch:
            self._stage._metrics[key.full_name] = metric

    def pop_step_values(self, sync: bool = True) -> dict[str, torch.Tensor]:
        """The on_step values logged since the last call, for the loggers (not read back yet). With several
        processes the values logged with sync_dist are reduced across them, which every rank does at the
        same step; `sync=False` for the rows of evaluation batches (rank zero's own values: ranks may run
        different numbers of evaluation batches)."""
        values, self._stage._step_values = self._stage._step_values, {}
        if sync and self.strategy is not None:
            values = self._synced_step_values(values)
        self.logged_metrics.update(values)
        return values

    def dataloader_of(self, name: str) -> int:
        """The evaluation dataloader whose key sent `name` to the loggers (0 with one dataloader)."""
        for key in self._stage._keys.values():
            if name in (key.epoch_name, key.step_name):
                return key.dataloader_idx or 0
        return 0

    def _synced_step_values(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Step values logged with sync_dist, reduced across the ranks (every rank calls this at the same
        step; the keys of every rank are gathered first, so each rank runs the same reductions)."""
        keys = self._stage._keys
        mine = {k.step_name: k.reduce_fx for k in keys.values() if k.sync_dist and k.step_name in values}
        wanted: dict[str, str] = {}
        for theirs in self.strategy.all_gather_object(mine):
            wanted.update(theirs)
        for name in sorted(wanted):
            fx = wanted[name]
            local = values.get(name)
            if local is None:  # this rank did not log it since the last flush: a neutral value
                local = torch.tensor(0.0 if fx in ("mean", "sum") else (-math.inf if fx == "max" else math.inf))
            values[name] = self.strategy.reduce(local.float().reshape(()), fx)
        return values

    def end_epoch(self) -> dict[str, torch.Tensor]:
        """Reduce the epoch aggregates; update the metric dicts; return what goes to the loggers."""
        to_loggers: dict[str, torch.Tensor] = {}
        synced = self._synced_epoch_values() if self.strategy is not None else {}
        for name, key in self._stage._keys.items():
            if not key.on_epoch:
                continue
            if name in self._stage._metrics:
                metric = self._stage._metrics[name]
                value = metric.compute()
                metric.reset()
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise ValueError(f"self.log({name!r}, metric): {type(metric).__name__}.compute() "
                                     "returned a non-scalar; log a scalar metric or use log_dict with a "
                                     "MetricCollection.")
                value = value.detach()
            elif name in synced:
                value = synced[name]
            elif name in self._stage._epoch:
                value = self._stage._epoch[name].compute()
            else:
                continue
            self.callback_metrics[key.full_name] = value
            self.callback_metrics[key.epoch_name] = value
            if key.prog_bar:  # the last step value stays next to it (Lightning's progress bar dict)
                self._prog_bar[key.epoch_name] = value
            if key.logger:
                to_loggers[key.epoch_name] = value
        self.logged_metrics.update(to_loggers)
        self._stage._epoch.clear()
        self._stage._metrics.clear()
        return to_loggers

    def _synced_epoch_values(self) -> dict[str, torch.Tensor]:
        """The epoch values of sync_dist keys over every rank's batches: a weighted mean is the sum of every
        rank's weighted totals over the sum of their weights (not a mean of means); sum, max and min reduce
        the same way. Keys logged on some ranks only (no batch there) get a neutral part, and a key is
        reported on every rank."""
        stage = self._stage
        mine = {n: dataclasses.asdict(k) for n, k in stage._keys.items()
                if k.sync_dist and k.on_epoch and n in stage._epoch}
        specs: dict[str, dict[str, Any]] = {}
        for theirs in self.strategy.all_gather_object(mine):
            specs.update(theirs)
        synced = {}
        for name in sorted(specs):
            if name not in stage._keys:
                stage._keys[name] = _Key(**specs[name])
            fx = specs[name]["reduce_fx"]
            agg = stage._epoch.get(name)
            total, weight = (agg.partial() if agg is not None else (None, 0.0))
            if fx == "mean":
                both = torch.tensor([0.0 if total is None else float(total), weight], dtype=torch.float64)
                both = self.strategy.reduce(both, "sum")
                synced[name] = (both[0] / both[1]).float() if both[1] > 0 else torch.tensor(math.nan)
            else:
                neutral = {"sum": 0.0, "max": -math.inf, "min": math.inf}[fx]
                part = torch.tensor(neutral if total is None else float(total), dtype=torch.float64)
                synced[name] = self.strategy.reduce(part, fx).float()
        return synced

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        # note: a host-device sync point; the progress bar calls this a few times a second at most
        return {k: v.item() for k, v in self._prog_bar.items()}

    def state_dict(self, model: torch.nn.Module | None = None) -> dict[str, Any]:
        """The partial epoch aggregates, key options and torchmetrics states of training, so that a
        mid-epoch resume reports the same epoch values."""
        paths = {id(m): p for p, m in model.named_modules()} if model is not None else {}
        metrics = {}
        for name, metric in self._train._metrics.items():
            path = self._train._keys[name].metric_attribute or paths.get(id(metric))
            if path is not None:  # a metric that is an attribute of the model can be found again
                metrics[name] = {"path": path, "update_count": metric._update_count,
                                 "state": {k: _detached(v) for k, v in metric.metric_state.items()}}
        return {
            "keys": {n: dataclasses.asdict(k) for n, k in self._train._keys.items()},
            "epoch": {n: agg.state_dict() for n, agg in self._train._epoch.items()},
            "metrics": metrics,
            "callback_metrics": {k: v.detach().cpu() for k, v in self.callback_metrics.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any], model: torch.nn.Module | None = None) -> None:
        self._train._keys = {n: _Key(**k) for n, k in state["keys"].items()}
        self._train._epoch = {n: EpochAggregate.from_state(s) for n, s in state["epoch"].items()}
        for name, saved in state.get("metrics", {}).items():
            metric = attrgetter(saved["path"])(model) if saved["path"] else model
            for attribute, value in saved["state"].items():
                setattr(metric, attribute, value)
            metric._update_count = saved["update_count"]
            metric._computed = None
            self._train._metrics[name] = metric
        self.callback_metrics.update(state["callback_metrics"])


class LoggerFeed:
    """What reaches the loggers: values read back to the host and sent by rank zero, with the step;
    hyperparameters and the graph at fit start. It remembers the newest step sent and the rows at it
    (`tail`), which a checkpoint records so that a resume can tell the rows logged before it from after.
    """

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.tail: tuple[int, list[dict[str, float]]] = (-1, [])

    def send(self, metrics: Mapping[str, torch.Tensor], step: int | None = None, eval_batch: bool = False) -> None:
        """`eval_batch`: the row of one validation / test batch (`on_step=True` there), at that stage's own
        count of batches and without the epoch column, as Lightning writes it; it is not on the training
        steps' axis, so it is not among the rows a resume tells apart by step."""
        trainer = self.trainer
        if not metrics or not trainer.loggers or not trainer.is_global_zero:
            return
        # note: a host-device sync point, once per log_every_n_steps and once per epoch
        values = {k: v.item() for k, v in metrics.items()}
        if not eval_batch:
            values["epoch"] = trainer.current_epoch
            if step is None:  # in fit the step just taken; after it (validate, test) the count of steps, as Lightning
                step = max(trainer._logged_steps() - 1, 0) if trainer.state == "fit" else trainer._logged_steps()
            if step != self.tail[0]:
                self.tail = (step, [])
            self.tail[1].append(values)
        for logger in trainer.loggers:
            logger.log_metrics(values, step)

    def hyperparameters(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        model, datamodule = trainer.lightning_module, trainer.datamodule
        logged = [obj for obj in (model, datamodule) if obj is not None and obj._log_hyperparams]
        params = {k: v for obj in logged for k, v in obj.hparams.items()}
        for logger in trainer.loggers:
            if logged:  # (save_hyperparameters(logger=False) on both: the loggers get none, not an empty set)
                logger.log_hyperparams(params)
            logger.log_graph(model, model.example_input_array)


class _InHook:
    __slots__ = ("logs", "name", "previous")

    def __init__(self, logs: LogCollector, name: str | None):
        self.logs, self.name, self.previous = logs, name, None

    def __enter__(self) -> None:
        self.previous, self.logs.hook = self.logs.hook, self.name

    def __exit__(self, *exc: Any) -> None:
        self.logs.hook = self.previous


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):
        return [_detached(v) for v in value]
    return value


def _infer_batch_size(batch: Any) -> int | None:
    """The length of the first tensor found in the batch (depth-first through lists, tuples, dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() > 0 else 1
    if isinstance(batch, Mapping):
        batch = batch.values()
    elif not isinstance(batch, (list, tuple)):
        return None
    for item in batch:
        size = _infer_batch_size(item)
        if size is not None:
            return size
    return None
