"""seed_everything: one call seeds python, numpy and torch (and the data order of every fit); the states of
every random generator, saved in checkpoints and put back on resume."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Any, Iterator, Mapping

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


def rng_states() -> dict[str, Any]:
    """The states of every random generator a training step may draw from."""
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        states["numpy"] = {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    except ImportError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Put back what `rng_states` returned."""
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    torch.set_rng_state(states["torch"])
    if "numpy" in states:
        import numpy as np

        n = states["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def draw_data_seed(loader: Any = None) -> int:
    """The seed of the training data order: from seed_everything if it was called, else drawn once from the
    global generator when `loader` shuffles (a DataLoader reading in order takes the generator's initial
    seed instead, so that fit draws nothing that a loop without ember would not)."""
    from torch.utils.data import DataLoader, SequentialSampler

    seed = current_seed()
    if seed is not None:
        return seed
    if isinstance(loader, DataLoader) and type(loader.sampler) is SequentialSampler:
        return torch.initial_seed() % 2**31
    return int(torch.randint(0, 2**31 - 1, ()).item())


@contextlib.contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Run a block without changing what the random generators draw after it (their states are put back).

    Example:
        >>> with isolate_rng():
        ...     torch.rand(1)  # the next draw outside is the same as without this block
    """
    states = rng_states()
    if not include_cuda:
        states.pop("cuda", None)
    try:
        yield
    finally:
        set_rng_states(states)
