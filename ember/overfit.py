"""`Trainer(overfit_batches=N)`: train and validate on the same first N batches (or fraction) every
epoch, as Lightning does. The Trainer sets `limit_train_batches` and `limit_val_batches` to N; here the
dataloaders are made to read their dataset in order, since a shuffled loader would give other batches
each epoch.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from torch.utils.data import BatchSampler, DataLoader, IterableDataset, SequentialSampler


def in_dataset_order(loader: Any, what: str, rebuild: Callable[..., DataLoader]) -> Any:
    """`loader`, or when it shuffles, a copy made by `rebuild(loader, sampler=...)` that reads its dataset in
    order (with a warning, as Lightning gives one)."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return loader  # an iterable's order is its own
    batches = loader.batch_sampler
    if type(getattr(batches, "sampler", loader.sampler)) is SequentialSampler and type(batches) in (BatchSampler,
                                                                                                  type(None)):
        return loader
    if type(loader) is not DataLoader or loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
        raise ValueError(
            f"Trainer(overfit_batches=...) needs the same {what} batches every epoch, but this {what} dataloader "
            f"({type(loader).__name__} with {type(loader.sampler).__name__}) cannot be made to read its dataset in "
            "order. Pass DataLoader(dataset, batch_size=..., shuffle=False) for overfitting.")
    warnings.warn(f"Trainer(overfit_batches=...) uses the same batches every epoch, so ember turns off the "
                  f"shuffling of the {what} dataloader ({type(loader.sampler).__name__}).", stacklevel=5)
    return rebuild(loader, sampler=SequentialSampler(loader.dataset))


__all__ = ["in_dataset_order"]
