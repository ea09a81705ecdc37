"""seed_everything: one call seeds python, numpy and torch (and the data order of every fit)."""

from __future__ import annotations

import logging
import os
import random

import torch

_SEED_ENV = "EMBER_GLOBAL_SEED"

log = logging.getLogger(__name__)


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed python's `random`, numpy and torch (all devices); returns the seed.

    With `verbose`, logs "Seed set to N" at INFO on the `ember.seed` logger (on stderr unless the
    application configured logging; see `ember/__init__.py`).

    The seed is also kept in the environment (`EMBER_GLOBAL_SEED`, inherited by DataLoader workers and
    DDP processes) and fixes the order in which each `fit` shuffles its training data.

    Example:
        >>> ember.seed_everything(42)
        42
    """
    if seed is None:
        env = os.environ.get(_SEED_ENV)
        seed = int(env) if env is not None else random.randint(0, 2**32 - 1)
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed_everything({seed!r}): the seed must be an integer in [0, 2**32).")
    os.environ[_SEED_ENV] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    if verbose:
        log.info(f"Seed set to {seed}")  # at INFO, as Lightning logs it
    return seed


def current_seed() -> int | None:
    """The seed of the last seed_everything call (in this process or its parent), or None."""
    value = os.environ.get(_SEED_ENV)
    return int(value) if value is not None else None
