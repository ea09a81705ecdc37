"""Logger: where metrics and hyperparameters go. CSV is the default; TensorBoard, MLflow and W&B
implement the same interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ember.plain import readable


class Logger:
    """Base class of ember's loggers.

    A logger has an identity (`name`, `version`) that `state_dict()` returns, so that a run resumed from
    a checkpoint continues the same logger run instead of starting a new one.
    """

    @property
    def name(self) -> str | None:
        return None

    @property
    def version(self) -> int | str | None:
        return None

    @property
    def save_dir(self) -> str | None:
        return None

    @property
    def root_dir(self) -> str | None:
        return None

    @property
    def log_dir(self) -> str | None:
        return None

    @property
    def experiment(self) -> Any:
        """The backend's own object (a SummaryWriter, an MLflow client, a wandb run)."""
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        raise NotImplementedError

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        pass

    def save(self) -> None:
        pass

    def finalize(self, status: str) -> None:
        """Flush and close: `status` is 'success', 'failed' or 'interrupted'."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The identity of the run this logger writes to."""
        return {"name": self.name, "version": self.version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the run named in `state` (called before anything is logged on resume)."""

    def run_folders(self) -> list[str]:
        """Folders of this logger's runs that `fit(ckpt_path="last")` may continue, newest first."""
        log_dir = self.log_dir
        return [log_dir] if log_dir else []

    def resume_at(self, step: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """A resumed run goes on from its checkpoint, written when this logger had received everything
        before `step` and, at `step`, exactly `rows`. Forget what the interrupted run logged after that
        point (the resumed run logs it again), where the backend allows."""


class FolderLogger(Logger):
    """A logger that writes into `<save_dir>/<name>/version_<N>[/<sub_dir>]` (CSV, TensorBoard).

    An int version names the folder `version_<int>`, a str names it as given, None takes the next
    free int when the folder is first needed.
    """

    def __init__(self, save_dir: str | os.PathLike, name: str | None, version: int | str | None,
                 sub_dir: str | os.PathLike | None = None):
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = os.fspath(sub_dir) if sub_dir is not None else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._name)

    @property
    def version(self) -> int | str:
        if self._version is None:
            self._version = next_version(Path(self.root_dir))
        return self._version

    @property
    def log_dir(self) -> str:
        version = self.version
        folder = os.path.join(self.root_dir, version if isinstance(version, str) else f"version_{version}")
        return os.path.join(folder, self._sub_dir) if self._sub_dir else folder

    def run_folders(self) -> list[str]:
        """This logger's version folders, newest first: the one it was given, or every `version_<N>`
        (where `fit(ckpt_path="last")` looks for the checkpoint to resume)."""
        if self._version is not None:
            return [self.log_dir]
        root = Path(self.root_dir)
        if not root.is_dir():
            return []
        numbered = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("version_")
                    and p.name[len("version_"):].isdigit()]
        numbered.sort(key=lambda p: int(p.name[len("version_"):]), reverse=True)
        return [os.path.join(str(p), self._sub_dir) if self._sub_dir else str(p) for p in numbered]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the saved version, unless this logger was given a version of its own."""
        if self._version is None and state.get("name") == self._name:
            self._version = state["version"]


def next_version(root: Path) -> int:
    """One more than the highest `version_<N>` folder in `root` (0 if there is none)."""
    if not root.is_dir():
        return 0
    versions = [int(p.name.split("_", 1)[1]) for p in root.iterdir()
                if p.is_dir() and p.name.startswith("version_") and p.name.split("_", 1)[1].isdigit()]
    return max(versions) + 1 if versions else 0


def flatten(params: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested dicts as one level: {'model': {'lr': 1}} -> {'model/lr': 1}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def add_prefix(metrics: Mapping[str, Any], prefix: str, sep: str = "-") -> dict[str, Any]:
    """Lightning's logger `prefix`: {'loss': 1} with prefix 'train' -> {'train-loss': 1}."""
    if not prefix:
        return dict(metrics)
    return {f"{prefix}{sep}{key}": value for key, value in metrics.items()}


def scalar_params(params: Any) -> dict[str, bool | int | float | str]:
    """Hyperparameters as one level of numbers, strings and bools, the values TensorBoard and MLflow
    store: nested dicts become 'a/b' keys, other values as hparams.yaml shows them (`readable`), lists as
    their str()."""
    flat = flatten(readable(params))  # a dict or an argparse Namespace
    for key, value in flat.items():
        flat[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def dump_hparams(params: Mapping[str, Any], yaml: Any) -> str:
    """hparams.yaml's text: one `name: value` line per hyperparameter, lists of numbers on one line."""
    return yaml.safe_dump(params, sort_keys=False, default_flow_style=None)
