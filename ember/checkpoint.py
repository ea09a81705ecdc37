"""The checkpoint format: a dict of named parts, written atomically, loaded without unpickling objects.

What a run puts in a checkpoint (the header and the table of named parts, `Trainer._parts`) is listed in
docs/checkpoint.md, which tests/test_checkpoint_format.py checks against a real checkpoint. This module
knows only the format: `Part`, `gather` and `restore` (one path for every part), atomic writes, safe loads.

Every value is a tensor or a plain Python container of numbers and strings, so the file loads with
`torch.load(path, weights_only=True)`. Typed hyperparameters (enums, paths, numpy values, ...) are stored
as tagged plain dicts that `ember.plain.from_plain` turns back: `load_checkpoint` returns them still
encoded, `Module.load_from_checkpoint` decodes them. `load_checkpoint` also reads Lightning's checkpoints:
the two classes their hyperparameters may hold (Lightning's AttributeDict, argparse.Namespace) are
allow-listed, and no other.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ember.attribute_dict import LIGHTNING_ATTRIBUTE_DICT_NAMES, AttributeDict

EXTENSION = ".ckpt"
# Lightning checks for this key when it loads a checkpoint; with it, an ember checkpoint opens there too.
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"
LIGHTNING_VERSION_VALUE = "2.4.0"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, not a checkpoint, or not matching the model."""


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write `checkpoint` to `path` atomically: a temporary file in the same folder, fsync'd, then renamed.

    A crash at any moment leaves either the previous file or the new one, never a half-written file.

    Example:
        >>> save_checkpoint({"state_dict": model.state_dict()}, "runs/last.ckpt")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(checkpoint), f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; a checkpoint is not
        os.replace(tmp, path)
    except BaseException:
        # note: BaseException so that a KeyboardInterrupt mid-write also leaves no stray temp file
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _remove_stale_temp_files(path: Path) -> None:
    """Delete what a killed write of `path` left: `.<name>.<8 random characters>.tmp` beside it.

    A SIGKILL mid-write skips the `except` that removes the temp file. The next write of the same file (a
    resumed run repeats the save it was killed in, under the same name) cleans up. Only names mkstemp
    makes for this target are removed; one process writes a given file (rank zero), so no temp file
    removed here is still being written.
    """
    own = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")  # mkstemp: prefix, 8 chars, suffix
    try:
        siblings = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in siblings:
        if own.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.remove(entry.path)
            except FileNotFoundError:
                pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: Any = None) -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`) and check that it is one.

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or holds pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {str(path)!r}: the file does not exist.")
    try:
        with torch.serialization.safe_globals(_foreign_safe_globals()):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        checkpoint = _attribute_dicts_back(checkpoint)
    except Exception as err:
        size = path.stat().st_size
        raise CheckpointError(
            f"Could not read the checkpoint {str(path)!r} ({size} bytes): {type(err).__name__}: {err}. "
            "The file is truncated, corrupt, or holds pickled Python objects that a safe load refuses. "
            "If it was written by ember, load an earlier checkpoint (ember writes atomically, so the "
            "previous file is intact); if it holds objects you trust, load it with "
            "torch.load(path, weights_only=False) and save the tensors again."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        kind = type(checkpoint).__name__
        keys = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else None
        raise CheckpointError(
            f"{str(path)!r} is not a training checkpoint: expected a dict with a 'state_dict' key, "
            f"got a {kind}" + (f" with keys {keys}" if keys is not None else "") + ". "
            "If it is a bare state dict, load it with model.load_state_dict(torch.load(path))."
        )
    return checkpoint


_made_by_stand_in = threading.local()


class _AttributeDictStandIn:
    """Allow-listed under Lightning's AttributeDict names while a checkpoint loads.

    torch's safe loader fills only plain dicts, so this "class" builds a plain dict and remembers it;
    `_attribute_dicts_back` then turns those dicts into ember's AttributeDict. Nothing from the file
    runs: the loader calls `__new__` with no arguments, then stores the pickled items.
    """

    def __new__(cls, *args: Any) -> dict:  # type: ignore[misc]
        made: dict = {}
        _made_by_stand_in.ids.add(id(made))
        return made


def _foreign_safe_globals() -> list[Any]:
    import argparse

    _made_by_stand_in.ids = set()
    return [(_AttributeDictStandIn, name) for name in LIGHTNING_ATTRIBUTE_DICT_NAMES] + [argparse.Namespace]


def _attribute_dicts_back(value: Any) -> Any:
    ids = _made_by_stand_in.ids
    if not ids:
        return value

    def convert(item: Any) -> Any:
        if type(item) is dict:
            converted = {k: convert(v) for k, v in item.items()}
            return AttributeDict(converted) if id(item) in ids else converted
        if type(item) is list:
            return [convert(v) for v in item]
        if type(item) is tuple:
            return tuple(convert(v) for v in item)
        return item

    try:
        return convert(value)
    finally:
        _made_by_stand_in.ids = set()


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                 source: str = "the checkpoint") -> None:
    """`model.load_state_dict` with an error that names the missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and hasattr(state_dict[k], "shape") and state_dict[k].shape != own[k].shape
    ]
    if mismatched or (strict and (missing or unexpected)):
        lines = [f"The weights in {source} do not match {type(model).__name__}."]
        if missing:
            lines.append(f"  missing from the checkpoint ({len(missing)}): {_short(missing)}")
        if unexpected:
            lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): {_short(unexpected)}")
        if mismatched:
            lines.append(f"  different shapes ({len(mismatched)}): {_short(mismatched)}")
        lines.append("Check that the model is built with the same hyperparameters as when it was saved; "
                     "pass strict=False to load only the matching keys (shapes must still match).")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state_dict, strict=strict)


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


@dataclass
class Part:
    """One named stateful part of a run: how to save it and how to put it back.

    Args:
        save: returns the part's state (tensors and plain Python values only).
        load: puts a saved state back.
        required: a checkpoint without this part cannot resume the run (an optional part is skipped,
            so checkpoints of older ember releases still load).
    """

    save: Callable[[], Any]
    load: Callable[[Any], None]
    required: bool = True
    per_rank: bool = False  # each process has its own (RNG states, partial log aggregates, gradients)


def gather(parts: Mapping[str, Part], all_gather: Callable[[Any], list[Any]] = lambda obj: [obj]) -> dict[str, Any]:
    """The state of every part, by name: what a checkpoint holds besides its header. A per-rank part is
    stored as `{"per_rank": [state of rank 0, state of rank 1, ...]}` (`all_gather` collects them; every
    rank must call this)."""
    return {name: {"per_rank": all_gather(part.save())} if part.per_rank else part.save()
            for name, part in parts.items()}


def restore(parts: Mapping[str, Part], checkpoint: Mapping[str, Any], source: str, rank: int = 0) -> None:
    """Put back every part that `checkpoint` holds, in the order of `parts`, after checking that it holds
    all the required ones (so a checkpoint missing one changes nothing). A per-rank part gives this rank
    its own state (rank 0's when the checkpoint was written by fewer processes, with a warning)."""
    missing = [name for name, part in parts.items() if part.required and name not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{source} cannot resume this run: it lacks {', '.join(repr(m) for m in missing)} (it holds "
            f"{sorted(checkpoint)}). It was written by another tool or with save_weights_only=True. Load its "
            "weights with Module.load_from_checkpoint(path) and call fit without ckpt_path.")
    for name, part in parts.items():
        if name in checkpoint:
            saved = checkpoint[name]
            if part.per_rank and isinstance(saved, Mapping) and set(saved) == {"per_rank"}:
                states = saved["per_rank"]
                if rank >= len(states):
                    warnings.warn(f"{source} was written by {len(states)} process(es); this is rank {rank}, so it "
                                  f"takes rank 0's {name!r}: the run goes on, but not exactly as it would have.",
                                  stacklevel=3)
                saved = states[rank] if rank < len(states) else states[0]
            part.load(saved)


def unique_state_keys(keys: list[str]) -> list[str]:
    """Callback state keys made unique: the n-th repeat of a key gets `#n` (two ModelCheckpoints with the
    same arguments but other folders keep separate state)."""
    seen: dict[str, int] = {}
    unique = []
    for key in keys:
        count = seen.get(key, 0)
        seen[key] = count + 1
        unique.append(key if count == 0 else f"{key}#{count}")
    return unique
