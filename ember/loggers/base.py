"""Logger: where metrics and hyperparameters go. CSV is the default; TensorBoard, MLflow and W&B
implement the same interface."""

from __future__ import annotations

from typing import Any, Mapping


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

    def resume_at(self, step: int) -> None:
        """A resumed run goes on from `step`: drop what the interrupted run logged at or after it, where the
        backend allows."""


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
    store: nested dicts become 'a/b' keys, one-element tensors their number, anything else its str()."""
    if not isinstance(params, Mapping):
        params = vars(params)  # an argparse Namespace
    flat = flatten(params)
    for key, value in flat.items():
        if hasattr(value, "numel") and value.numel() == 1:
            value = value.item()
        flat[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat
