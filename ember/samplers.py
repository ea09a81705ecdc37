"""Resumable sampling: the order of an epoch as a function of (seed, epoch), and a start position.

Exact mid-epoch resume needs two facts about the training data: the order of this epoch and how far
into it the run got. `ResumableSampler` makes the order a function of (seed, epoch), so it needs no
saved permutation, and `ResumableBatchSampler` starts at a saved batch position by skipping indices,
never loading the skipped samples. A plain `DataLoader(dataset, batch_size=..., shuffle=True)` gets
these swapped in (`make_resumable`), as a distributed sampler would be.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler, Sampler, SequentialSampler


class ResumableSampler(Sampler[int]):
    """Indices in an order fixed by (seed, epoch): shuffled with its own generator, or sequential.

    With several ranks (`num_replicas`), global batch i (of `batch_size * num_replicas` indices of that
    order) is cut into one batch per rank, rank r taking its r-th slice: together the ranks' batch i is
    the one-process batch i of the global batch size. A short last global batch is split evenly, padded
    with indices from the start of the order so that every rank runs the same number of batches (unless
    `drop_last`, which drops it).
    """

    def __init__(self, length: int, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 batch_size: int = 1, drop_last: bool = False):
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0
        self.num_replicas, self.rank, self.batch_size, self.drop_last = num_replicas, rank, batch_size, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            order = list(range(self.length))
        else:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        if self.num_replicas == 1:
            return iter(order)
        return iter(self._this_ranks(order))

    def _this_ranks(self, order: list[int]) -> list[int]:
        per_rank, ranks = self.batch_size, self.num_replicas
        step = per_rank * ranks
        full = len(order) // step
        mine = [i for b in range(full) for i in order[b * step + self.rank * per_rank:
                                                        b * step + (self.rank + 1) * per_rank]]
        rest = order[full * step:]
        if rest and not self.drop_last:
            share = -(-len(rest) // ranks)
            rest = rest + order[: share * ranks - len(rest)]
            mine += rest[self.rank * share:(self.rank + 1) * share]
        return mine

    def __len__(self) -> int:
        if self.num_replicas == 1:
            return self.length
        step = self.batch_size * self.num_replicas
        rest = self.length % step
        return (self.length // step) * self.batch_size + (0 if self.drop_last or not rest
                                                          else -(-rest // self.num_replicas))


class EvalShardSampler(Sampler[int]):
    """Rank r of n takes indices r, r+n, r+2n, ...: an evaluation split with no padded duplicates (the
    ranks may run different numbers of batches; evaluation reduces only at its end)."""

    def __init__(self, length: int, rank: int, num_replicas: int):
        self.length, self.rank, self.num_replicas = length, rank, num_replicas

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


class ResumableBatchSampler(BatchSampler):
    """Batches of a `ResumableSampler`, able to start at batch `start` without loading the ones before."""

    def __init__(self, sampler: ResumableSampler, batch_size: int, drop_last: bool):
        super().__init__(sampler, batch_size, drop_last)
        self.start = 0

    def __iter__(self) -> Iterator[list[int]]:
        # A generator, so that `start` is read when the first batch is asked for, not when iter() is called:
        # torch's multi-worker loader iterator calls iter() on the batch sampler twice and uses the second.
        start, self.start = self.start, 0  # the skip applies to one epoch only
        batches = super().__iter__()
        yield from itertools.islice(batches, start, None) if start else batches


def make_resumable(loader: Any, seed: int, rank: int = 0, num_replicas: int = 1) -> tuple[Any, bool]:
    """Return (loader, True) with ember's samplers swapped in, or (loader, False) if that cannot be done.

    Only a `DataLoader` built with `batch_size` over a map-style dataset and torch's standard
    sequential or random sampler (without replacement) can be swapped; anything else is left as it is.
    """
    if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
        return loader, False
    if isinstance(loader.batch_sampler, ResumableBatchSampler):
        return loader, True
    if loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
        return loader, False
    sampler = loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif type(sampler) is SequentialSampler:
        shuffle = False
    else:
        return loader, False
    sampler = ResumableSampler(len(loader.dataset), shuffle, seed, num_replicas, rank, loader.batch_size,
                               loader.drop_last)
    batch_sampler = ResumableBatchSampler(sampler, loader.batch_size, loader.drop_last)
    # what iterating `loader` draws from the global generator (workers' base seed; the sampler's seed if it has no
    # generator): ember's draws as much each epoch, so the random numbers are those of a loop without ember
    batch_sampler.global_draws = int(loader.generator is None) + int(shuffle and loader.sampler.generator is None)
    return rebuild_loader(loader, batch_sampler=batch_sampler, generator=private_generator(seed)), True


def private_generator(seed: int) -> torch.Generator:
    """A generator for a DataLoader's worker seeds, so that starting an epoch draws nothing from the
    global torch generator (which would shift every random draw of the training after a resume)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def rebuild_loader(loader: DataLoader, **changes: Any) -> DataLoader:
    """A new DataLoader with the same settings as `loader` except `changes`."""
    kwargs = dict(
        dataset=loader.dataset, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=getattr(loader, "pin_memory_device", ""),
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if "batch_sampler" not in changes:
        kwargs.update(batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last)
    kwargs.update(changes)
    return DataLoader(**kwargs)
