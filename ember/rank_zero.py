"""Run a function, print or warn on the process of rank 0 only.

The rank is read when asked: a value set by hand (`rank_zero_only.rank = r`, as Lightning's strategies
do), else the running `torch.distributed` group, else the launcher's environment (RANK, LOCAL_RANK,
SLURM_PROCID, JSM_NAMESPACE_RANK), else 0.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, TypeVar

import torch

log = logging.getLogger("ember")

F = TypeVar("F", bound=Callable[..., Any])

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class _RankZeroOnly:
    """`@rank_zero_only`: the decorated function runs on rank 0 and returns None elsewhere.

    Example:
        >>> @rank_zero_only
        ... def save_figure(path): ...
        >>> rank_zero_only.rank
        0
    """

    def __init__(self) -> None:
        self._rank: int | None = None

    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank()
        for name in _RANK_VARIABLES:
            if os.environ.get(name, "").isdigit():
                return int(os.environ[name])
        return 0

    @rank.setter
    def rank(self, value: int | None) -> None:
        self._rank = None if value is None else int(value)

    def __call__(self, fn: F = None, default: Any = None) -> F:
        if fn is None:  # @rank_zero_only(default=...)
            return functools.partial(self.__call__, default=default)  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs) if self.rank == 0 else default

        return wrapped  # type: ignore[return-value]


rank_zero_only = _RankZeroOnly()


def rank_zero_info(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """An INFO message of the "ember" logger, on rank 0."""
    if rank_zero_only.rank == 0:
        log.info(*args, stacklevel=stacklevel, **kwargs)


def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    if rank_zero_only.rank == 0:
        log.debug(*args, stacklevel=stacklevel, **kwargs)


def rank_zero_warn(message: str | Warning, stacklevel: int = 4, category: type[Warning] = UserWarning,
                   **kwargs: Any) -> None:
    """`warnings.warn` on rank 0 (a `UserWarning` unless `category` says otherwise)."""
    if rank_zero_only.rank == 0:
        warnings.warn(message, category, stacklevel=stacklevel, **kwargs)


def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5, **kwargs: Any) -> None:
    rank_zero_warn(message, stacklevel=stacklevel, category=kwargs.pop("category", DeprecationWarning), **kwargs)


def rank_prefixed_message(message: str, rank: int | None) -> str:
    return f"[rank: {rank}] {message}" if rank is not None else message


__all__ = ["rank_prefixed_message", "rank_zero_debug", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only",
           "rank_zero_warn"]
