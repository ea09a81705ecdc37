"""DataModule, the connection of a run's dataloaders (resumable sampling swapped in: samplers.py), and
moving batches to the device."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler

from ember.arguments import limited
from ember.hparams import HyperparametersMixin
from ember.overfit import in_dataset_order
from ember.samplers import (EvalShardSampler, ResumableBatchSampler, ResumableSampler, make_resumable,
                            rebuild_loader)
from ember.seed import draw_data_seed


class DataModule(HyperparametersMixin):
    """Where the data comes from: download once, set up per stage, hand out dataloaders.

    Example:
        >>> class Digits(ember.DataModule):
        ...     def setup(self, stage):
        ...         self.train = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        ...     def train_dataloader(self):
        ...         return DataLoader(self.train, batch_size=8, shuffle=True)
    """
    CHECKPOINT_HYPER_PARAMS_KEY = "datamodule_hyper_parameters"  # (Lightning's keys for a datamodule's)
    CHECKPOINT_HYPER_PARAMS_NAME = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "datamodule_hparams_type"

    name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.trainer = None

    @classmethod
    def from_datasets(cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
                      predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0,
                      **datamodule_kwargs: Any) -> "DataModule":
        """A DataModule whose dataloaders are built over the given datasets (each a Dataset, or a list or
        dict of them; the training ones are shuffled).

        Example:
            >>> dm = ember.DataModule.from_datasets(train_set, val_set, batch_size=32)
        """

        def loaders(datasets: Any, shuffle: bool) -> Any:
            if isinstance(datasets, Mapping):
                return {k: loaders(v, shuffle) for k, v in datasets.items()}
            if isinstance(datasets, (list, tuple)):
                return [loaders(v, shuffle) for v in datasets]
            return DataLoader(datasets, batch_size=batch_size, num_workers=num_workers,
                              shuffle=shuffle and not isinstance(datasets, IterableDataset),
                              pin_memory=torch.cuda.is_available())

        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        sizes = {k: v for k, v in {"batch_size": batch_size, "num_workers": num_workers}.items()
                 if takes_any or k in params}
        datamodule = cls(**datamodule_kwargs, **sizes)
        for name, datasets, shuffle in (("train_dataloader", train_dataset, True),
                                        ("val_dataloader", val_dataset, False),
                                        ("test_dataloader", test_dataset, False),
                                        ("predict_dataloader", predict_dataset, False)):
            if datasets is not None:
                setattr(datamodule, name, lambda d=datasets, s=shuffle: loaders(d, s))
        return datamodule

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             **kwargs: Any) -> "DataModule":
        """Build the DataModule from the hyperparameters a checkpoint saved for it (updated by `kwargs`) and
        put back its `state_dict`.

        Example:
            >>> dm = Digits.load_from_checkpoint("runs/version_0/checkpoints/last.ckpt", batch_size=64)
        """
        from ember.checkpoint import load_checkpoint
        from ember.plain import from_plain

        checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
        hparams = {k: from_plain(v) for k, v in (checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY) or {}).items()}
        if hparams_file is not None:
            import yaml

            with open(hparams_file) as f:
                hparams.update(yaml.safe_load(f) or {})
        hparams.update(kwargs)
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            hparams = {k: v for k, v in hparams.items() if k in params}
        datamodule = cls(**hparams)
        # ember saves the state under 'datamodule'; Lightning under the class's name
        state = checkpoint.get("datamodule") or checkpoint.get(cls.__qualname__)
        if state:
            datamodule.load_state_dict(state)
        return datamodule

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch before it moves to the device; when a DataModule overrides it, it is used in place
        of the Module's."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch after it moved to the device (used in place of the Module's when overridden)."""
        return batch

    def prepare_data(self) -> None:
        """Download or write to disk, once per machine. Do not set state here."""

    def setup(self, stage: str) -> None:
        """Build datasets for `stage` ('fit', 'validate', 'test' or 'predict')."""

    def teardown(self, stage: str) -> None:
        """Release what `setup` built."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no train_dataloader(); define it to fit.")

    def val_dataloader(self) -> Any:
        return []

    def test_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no test_dataloader(); define it to test.")

    def predict_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no predict_dataloader(); define it to "
                                  "predict.")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return move_to_device(batch, device)

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (for example a tokenizer's vocabulary size)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put back what `state_dict` returned."""


def as_loader_list(loaders: Any, what: str) -> list[Any]:
    """One dataloader or a list/tuple/dict of them, as a list (dict order kept)."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        for i, item in enumerate(loaders):
            if not _iterable(item):
                raise TypeError(f"{what}[{i}] is a {type(item).__name__}; expected a DataLoader or another "
                                "iterable of batches.")
        return list(loaders)
    if not _iterable(loaders):
        raise TypeError(f"{what} is a {type(loaders).__name__}; expected a DataLoader (or an iterable of "
                        "batches, or a list of them).")
    return [loaders]


def _iterable(obj: Any) -> bool:
    return hasattr(obj, "__iter__") and not isinstance(obj, (str, bytes, torch.Tensor))


def loader_length(loader: Any) -> int | None:
    """`len(loader)`, or None for loaders without a length (iterable datasets)."""
    try:
        return len(loader)
    except TypeError:
        return None


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in `batch` (nested lists, tuples, dicts, dataclasses, `.to()`-able objects)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device) for k, v in batch.items()}
        try:
            return type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


def warn_not_resumable(loader: Any) -> None:
    warnings.warn(
        f"Resuming in the middle of an epoch cannot be exact with this training data "
        f"({type(loader).__name__} over {type(getattr(loader, 'dataset', loader)).__name__}): ember can "
        "only restore the order and position of a torch DataLoader built with batch_size over a "
        "map-style dataset with shuffle=True/False. ember skips the batches already done by loading and "
        "dropping them, so the order of this epoch may differ from the interrupted run.",
        stacklevel=3,
    )


def warn_workers_not_exact(loader: Any) -> None:
    warnings.warn(
        f"Resuming in the middle of an epoch with DataLoader(num_workers={loader.num_workers}): the order and "
        "position of the data are restored exactly, but random numbers drawn inside worker processes "
        "(random augmentation) are not, because each worker restarts its random stream and batches go to "
        "other workers than in the interrupted run. Resume is exact only if the dataset draws no random "
        "numbers in workers, or draws them from ember.data.sample_generator(index) (seeded by the data "
        "seed, the epoch and the sample index). See docs/resume.md.",
        stacklevel=3,
    )


def sample_generator(index: int) -> torch.Generator | None:
    """A generator for the random numbers of sample `index` (augmentation), the same in every run.

    Inside a DataLoader worker it is seeded by (the loader's seed for this epoch, `index`), so which
    worker loads the sample, and whether the run was resumed in the middle of the epoch, change nothing.
    In the main process (num_workers=0) it returns None, so torch draws from the global generator, which
    ember saves and restores with every checkpoint. Pass it as `generator=` to torch's random functions.

    Example:
        >>> def __getitem__(self, index):
        ...     flip = torch.rand((), generator=ember.data.sample_generator(index)) < 0.5
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        return None
    generator = torch.Generator()
    # info.seed is the epoch's base seed plus the worker id: the base seed alone is the same in every worker
    generator.manual_seed(((info.seed - info.id) * 1_000_003 + index) % 2**63)
    return generator


__all__ = ["DataModule", "ResumableSampler", "ResumableBatchSampler", "make_resumable", "move_to_device",
           "sample_generator"]


class DataConnector:
    """Connects a run to its data: builds the loaders of each stage, counts their batches under the
    `limit_*` arguments, positions the training data for an epoch, and moves batches to the device.

    Args:
        trainer: the Trainer whose `lightning_module`, `datamodule`, `strategy` and `limit_*` are read.
        precision: converts inputs under 64-true / bf16-true.
        module_class: the Module base class, whose batch-transfer hooks are the defaults.
    """

    def __init__(self, trainer: Any, precision: Any, module_class: type):
        self.trainer, self.precision, self.module_class = trainer, precision, module_class
        self.train_resumable = True
        self.as_they_come = False  # batches need no transfer (see `batches_need_no_transfer`)

    def train_loader(self, loaders: Any, state: Any) -> tuple[Any, float]:
        """The training loader (with ember's resumable sampler if it can be swapped in), its batch count."""
        trainer = self.trainer
        if loaders is None:
            source = trainer.datamodule if trainer.datamodule is not None else trainer.lightning_module
            if getattr(source, "train_dataloader", None) is None:
                raise ValueError("trainer.fit() found no training data: pass train_dataloaders, a datamodule, "
                                 "or define train_dataloader() on the model.")
            loaders = source.train_dataloader()
        if isinstance(loaders, (list, tuple, Mapping)):
            raise TypeError("trainer.fit(train_dataloaders=...) takes one DataLoader; combine several into one "
                            "dataset or loader.")
        as_loader_list(loaders, "train_dataloaders")
        if trainer.overfit_batches:
            loaders = in_dataset_order(loaders, "training", rebuild_loader)
        seed = state.data_seed = draw_data_seed(loaders) if state.data_seed is None else state.data_seed
        loader = trainer.strategy.prepare_train_loader(loaders, seed)
        rank, replicas = trainer._shard()
        loader, self.train_resumable = make_resumable(loader, seed, rank, replicas)
        if replicas > 1 and not self.train_resumable:
            warnings.warn(f"The training data ({type(loader).__name__} over "
                          f"{type(getattr(loader, 'dataset', loader)).__name__}) cannot be split by rank by ember "
                          "(it has its own sampler, or no length): every rank iterates all of it. Split it "
                          "yourself with trainer.global_rank and trainer.world_size.", stacklevel=4)
        count = limited(loader_length(loader), trainer.limit_train_batches, "limit_train_batches")
        if count == 0 and trainer.limit_train_batches != 0:
            warnings.warn(f"The training dataloader ({type(loader).__name__}) has no batches, so fit trains "
                          "nothing. Check the dataset's length, batch_size and drop_last.", stacklevel=4)
        return loader, count

    def eval_loaders(self, stage: str, loaders: Any) -> tuple[list[Any], list[float]]:
        """The loaders of 'validate', 'test' or 'predict' (given, or from the datamodule / model), and
        the number of batches each runs."""
        trainer = self.trainer
        method = {"validate": "val_dataloader", "test": "test_dataloader", "predict": "predict_dataloader"}[stage]
        if loaders is None:
            datamodule = trainer.datamodule
            source = datamodule if datamodule is not None and hasattr(datamodule, method) else trainer.lightning_module
            method_fn = getattr(source, method, None)
            loaders = method_fn() if callable(method_fn) else None
            if loaders is None and stage != "validate":
                raise ValueError(f"trainer.{stage}() found no data: pass dataloaders=..., a datamodule, or "
                                 f"define {method}() on the model or datamodule.")
        loaders = as_loader_list(loaders, f"{stage} dataloaders")
        if trainer.overfit_batches and stage == "validate" and trainer.state == "fit":
            loaders = [in_dataset_order(lo, "validation", rebuild_loader) for lo in loaders]
        rank, replicas = trainer._shard()
        loaders = [_shard_eval(lo, rank, replicas) for lo in loaders]
        name = {"validate": "limit_val_batches", "test": "limit_test_batches",
                "predict": "limit_predict_batches"}[stage]
        limit = getattr(trainer, name)
        return loaders, [limited(loader_length(lo), limit, name) for lo in loaders]

    def epoch_iterator(self, loader: Any, epoch: int, start: int, seed: int) -> Iterator:
        """Iterate the training loader for `epoch` from batch `start` (> 0 when resuming mid-epoch)."""
        sampler = getattr(loader, "batch_sampler", None)
        if self.train_resumable:
            sampler.sampler.set_epoch(epoch)
            sampler.start = start
            loader.generator.manual_seed(seed + epoch)
            torch.empty(sampler.global_draws if start == 0 else 0, dtype=torch.int64).random_()  # (see make_resumable)
            return iter(loader)
        for obj in (getattr(loader, "sampler", None), sampler):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        iterator = iter(loader)
        for _ in range(start):  # cannot position it: load and drop the batches already done
            next(iterator, None)
        return iterator

    def check_resume(self, loader: Any) -> None:
        """Warn when a mid-epoch resume of this loader cannot be exact."""
        if not self.train_resumable:
            warn_not_resumable(loader)
        elif getattr(loader, "num_workers", 0) > 0:
            warn_workers_not_exact(loader)

    def prepare(self) -> None:
        """Decide once per stage whether batches can skip the transfer hooks."""
        self.as_they_come = self.batches_need_no_transfer()

    def to_device(self, batch: Any, dataloader_idx: int) -> Any:
        if self.as_they_come:
            return batch
        trainer = self.trainer
        device = trainer.strategy.root_device
        batch = self._hook_owner("on_before_batch_transfer").on_before_batch_transfer(batch, dataloader_idx)
        batch = self._hook_owner("transfer_batch_to_device").transfer_batch_to_device(batch, device, dataloader_idx)
        batch = self.precision.convert_input(batch)
        return self._hook_owner("on_after_batch_transfer").on_after_batch_transfer(batch, dataloader_idx)

    def _hook_owner(self, hook: str) -> Any:
        """Whose batch-transfer hook runs: the DataModule's when it overrides it (as in Lightning), else the
        Module's."""
        datamodule = self.trainer.datamodule
        if datamodule is not None and _overrides(datamodule, DataModule, hook):
            return datamodule
        return self.trainer.lightning_module

    def batches_need_no_transfer(self) -> bool:
        """On the CPU, with no batch-transfer hook overridden and float32 inputs, a DataLoader's batches
        are already what the step needs: `to_device` then returns them untouched."""
        trainer, Module = self.trainer, self.module_class
        model, datamodule = trainer.lightning_module, trainer.datamodule
        hooks = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
        return (trainer.strategy.root_device.type == "cpu" and self.precision.param_dtype is None
                and not any(_overrides(model, Module, hook) for hook in hooks)
                and not (datamodule is not None and any(_overrides(datamodule, DataModule, hook) for hook in hooks)))


def _overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(type(obj), name, None) is not getattr(base, name)


def _shard_eval(loader: Any, rank: int, replicas: int) -> Any:
    """This rank's share of an evaluation DataLoader (several ranks), or the loader as it is."""
    if replicas == 1 or type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
        return loader
    if loader.batch_size is None or type(loader.sampler) not in (SequentialSampler, RandomSampler):
        return loader
    return rebuild_loader(loader, sampler=EvalShardSampler(len(loader.dataset), rank, replicas),
                          batch_size=loader.batch_size, drop_last=loader.drop_last)

