"""Run folders: `runs/<name>/<date>/<time>_<short id>/` with `.hydra/`, logs, `checkpoints/` and `run.json`.

`run.json` says what became of the run: `status` (running, done, failed; pruned: stopped by an Optuna
pruner), the objective `metric`, the command, the git commit of the working directory (if any), the config's
hash (so `ckpt_path=auto` finds earlier runs of the same config) and how many times fit was started in this folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
TRACEBACK_FILE = "traceback.txt"
# keys that do not change what a run computes, left out of the config hash
NOT_HASHED = ("ckpt_path", "paths")


def short_id() -> str:
    return uuid.uuid4().hex[:6]


def config_hash(plain_cfg: dict[str, Any]) -> str:
    kept = {k: v for k, v in plain_cfg.items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit(cwd: str | Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunRecord:
    """The `run.json` of one run folder."""

    def __init__(self, folder: str | Path, write: bool = True):
        self.folder = Path(folder)
        self.write = write  # False in the other ranks of a DDP run: they read, rank 0 writes
        self.path = self.folder / RUN_FILE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def metric(self) -> float | None:
        return self.data.get("metric")

    def start(self, stage: str, cfg_hash: str, params: list[str], ckpt_path: str | None = None) -> None:
        self.data.update(status="running", ckpt_path=ckpt_path, stage=stage, metric=None, command=os.environ.get("EMBER_COMMAND", " ".join(sys.argv)),
                         cwd=os.getcwd(), git_commit=git_commit(os.getcwd()), config_hash=cfg_hash,
                         params=params, started=time.time(), pid=os.getpid(), fit_calls=self.data.get("fit_calls", 0))
        self.data.pop("error", None)
        self.save()

    def count_fit(self) -> None:
        self.data["fit_calls"] = self.data.get("fit_calls", 0) + 1
        self.save()

    def finish(self, metric: float | None, monitor: str | None) -> None:
        self.data.update(status="done", metric=metric, monitor=monitor, ended=time.time())
        self.data["seconds"] = round(self.data["ended"] - self.data["started"], 3)
        self.save()

    def fail(self, error: BaseException) -> None:
        if self.write:
            (self.folder / TRACEBACK_FILE).write_text("".join(traceback.format_exception(error)))
        self.data.update(status="failed", error=f"{type(error).__name__}: {error}", ended=time.time())
        self.data["seconds"] = round(self.data["ended"] - self.data.get("started", self.data["ended"]), 3)
        self.save()

    def save(self) -> None:
        if not self.write:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data)


def newest_resumable(runs_dir: str | Path, cfg_hash: str, exclude: str | Path) -> Path | None:
    """The `last.ckpt` of the newest run folder under `runs_dir` whose config hash is `cfg_hash`."""
    found = []
    for record in Path(runs_dir).glob(f"*/*/{RUN_FILE}"):
        folder = record.parent
        last = folder / "checkpoints" / "last.ckpt"
        if folder.resolve() == Path(exclude).resolve() or not last.exists():
            continue
        data = json.loads(record.read_text())
        if data.get("config_hash") == cfg_hash:
            found.append((data.get("started", 0), last))
    return max(found)[1] if found else None


def remove_run_folder(folder: str | Path, stop_at: str | Path) -> None:
    """Remove a run folder that never ran, and the parents it leaves empty, up to `stop_at`."""
    folder, stop_at = Path(folder).resolve(), Path(stop_at).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    parent = folder.parent
    while parent != stop_at and stop_at in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
