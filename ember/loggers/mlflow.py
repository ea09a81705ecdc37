"""MLFlowLogger: metrics, parameters and checkpoints in an MLflow run.

By default the tracking store is SQLite, `<save_dir or cwd>/mlruns/mlflow.db` (MLflow's file store is
deprecated), with artifacts next to it in `mlruns/artifacts/`; browse it with
`mlflow ui --backend-store-uri sqlite:///<path>/mlflow.db`. A `tracking_uri` argument (or the
`MLFLOW_TRACKING_URI` variable) points it at any other store or server.

Resume: `state_dict()` holds the run id, so a fit resumed from a checkpoint logs into the same run.
MLflow cannot delete metric points, so `resume_at(step, rows)` counts, for every metric of the run, the
values the interrupted run logged after its checkpoint (the checkpoint says which rows at `step` it saw),
and the resumed run skips that many of its own at each (metric, step): what the interrupted run logged
after its last checkpoint stays (a bit-exact resume logs the same values again), and each value is in
the run once, also where a step holds several (two validations between two optimizer steps).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ember.loggers.base import Logger, add_prefix, scalar_params

_RUN_STATUS = {"success": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_BAD_NAME_CHARACTERS = re.compile(r"[^/\w.\- :]")  # what MLflow accepts in metric and param names
_MAX_METRICS_PER_BATCH, _MAX_PARAMS_PER_BATCH, _MAX_PARAM_LENGTH = 1000, 100, 6000
_MAX_QUEUED = 1000  # queued writes kept before waiting for them


class MLFlowLogger(Logger):
    """Log to an MLflow run (created on first use, or continued from `run_id`).

    Args:
        experiment_name: the MLflow experiment; created if missing.
        run_name: the run's display name.
        tracking_uri: the store or server; default `MLFLOW_TRACKING_URI`, else
            `sqlite:///<save_dir or cwd>/mlruns/mlflow.db`.
        tags: run tags (added to the source, user and git tags MLflow resolves itself).
        save_dir: the folder of the default store, and of the run's local folder (`log_dir`, where
            ModelCheckpoint writes by default).
        log_model: True logs the best checkpoint as an artifact when fit ends; 'all' logs every
            checkpoint as it is saved. Artifacts go to `checkpoints/<file name>` in the run.
        prefix: prepended to every metric name as `<prefix>-<name>`.
        artifact_location: where a new experiment keeps artifacts (default: `mlruns/artifacts/` next to
            the default store, else the server's choice).
        run_id: continue this existing run.
        synchronous: False queues metric writes to MLflow's background thread (flushed at finalize):
            a write to the SQLite store takes ~35 ms on a slow disk, in the loop unless queued; a
            process killed hard loses what is still queued.

    Example:
        >>> trainer = ember.Trainer(logger=MLFlowLogger("mnist", save_dir="runs"))
    """

    def __init__(self, experiment_name: str = "lightning_logs", run_name: str | None = None,
                 tracking_uri: str | None = None, tags: Mapping[str, Any] | None = None,
                 save_dir: str | os.PathLike | None = None, log_model: bool | str = False, prefix: str = "",
                 artifact_location: str | None = None, run_id: str | None = None, synchronous: bool = True):
        if log_model not in (True, False, "all"):
            raise ValueError(f"MLFlowLogger(log_model={log_model!r}): expected False, True or 'all'.")
        _import_mlflow()  # fail here, not at the first step, when mlflow is missing
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._tags = dict(tags or {})
        self._root = Path(save_dir or os.getcwd()) / "mlruns"
        self._default_store = tracking_uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
        self._tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"sqlite:///{(self._root / 'mlflow.db').resolve()}"
        self._save_dir = save_dir
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._synchronous = synchronous
        self._queued: list[Any] = []  # with synchronous=False: the writes MLflow's thread has not confirmed
        self._experiment_id: str | None = None
        self._client: Any = None
        # (metric, step) -> how many values the interrupted run logged there after its checkpoint: the resumed
        # run logs the same values again, and they are skipped (MLflow cannot delete them; see resume_at)
        self._already_logged: dict[tuple[str, int], int] = {}
        self._renamed: set[str] = set()
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: set[tuple[str, int]] = set()

    @property
    def experiment(self) -> Any:
        """The `mlflow.MlflowClient`; the experiment and the run are created (or found) on first use."""
        if self._client is None:
            mlflow = _import_mlflow()
            if self._default_store:
                self._root.mkdir(parents=True, exist_ok=True)
            client = mlflow.MlflowClient(self._tracking_uri)
            if self._run_id is not None:
                self._experiment_id = self._existing_run(client).info.experiment_id
                client.update_run(self._run_id, status="RUNNING")
            else:
                self._experiment_id = self._experiment(client)
                from mlflow.tracking.context.registry import resolve_tags

                run = client.create_run(self._experiment_id, run_name=self._run_name,
                                        tags=resolve_tags(self._tags))
                self._run_id = run.info.run_id
            self._client = client
        return self._client

    @property
    def run_id(self) -> str:
        self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str:
        self.experiment
        return self._experiment_id

    @property
    def name(self) -> str:
        """The experiment id (as in Lightning)."""
        return self.experiment_id

    @property
    def version(self) -> str:
        """The run id (as in Lightning)."""
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        return str(self._root) if self._default_store else self._save_dir

    def run_folders(self) -> list[str]:
        """The local folders of this experiment's runs (`mlruns/<experiment id>/<run id>`), or of the run
        this logger was given: where `fit(ckpt_path="last")` looks for checkpoints."""
        if self._run_id is not None:
            return [self.log_dir]
        if not self._root.is_dir():
            return []
        return [str(run) for experiment in self._root.iterdir() if experiment.is_dir()
                for run in experiment.iterdir() if run.is_dir()]

    @property
    def log_dir(self) -> str:
        """A local folder for this run's files: `<save_dir or cwd>/mlruns/<experiment id>/<run id>`."""
        return str(self._root / self.experiment_id / self.run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = []
        for key, value in add_prefix(metrics, self._prefix).items():
            key = self._valid_name(key)
            if self._already_logged and self._already_logged.get((key, step or 0), 0) > 0:
                self._already_logged[(key, step or 0)] -= 1
                continue  # the interrupted run logged this value after its checkpoint already
            batch.append(Metric(key, float(value), timestamp, step or 0))
        for start in range(0, len(batch), _MAX_METRICS_PER_BATCH):
            queued = self.experiment.log_batch(self.run_id, metrics=batch[start:start + _MAX_METRICS_PER_BATCH],
                                               synchronous=self._synchronous)
            if not self._synchronous:
                self._queued.append(queued)
        if len(self._queued) >= _MAX_QUEUED:
            self._wait_for_queued()

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Log `params` as MLflow params: nested dicts as 'a/b' keys, values as strings. MLflow keeps a
        param's first value: logging the same key with another value raises MlflowException."""
        from mlflow.entities import Param

        batch = [Param(self._valid_name(k), str(v)[:_MAX_PARAM_LENGTH]) for k, v in scalar_params(params).items()]
        for start in range(0, len(batch), _MAX_PARAMS_PER_BATCH):
            self.experiment.log_batch(self.run_id, params=batch[start:start + _MAX_PARAMS_PER_BATCH])

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._wait_for_queued()  # metrics in the store keep up with checkpoints
        self._checkpoint_callback = checkpoint_callback
        if self._log_model == "all":
            self._log_checkpoints(checkpoint_callback.best_k_models)

    def finalize(self, status: str) -> None:
        """Log the checkpoints that `log_model` asks for, and mark the run FINISHED, FAILED or KILLED."""
        if self._client is None:
            return
        self._wait_for_queued()
        callback = self._checkpoint_callback
        if callback is not None and self._log_model == "all":
            self._log_checkpoints([*callback.best_k_models, callback.last_model_path])
        elif callback is not None and self._log_model:
            self._log_checkpoints([callback.best_model_path or callback.last_model_path])
        self._client.set_terminated(self._run_id, _RUN_STATUS.get(status, "FINISHED"))

    def state_dict(self) -> dict[str, Any]:
        return {"experiment_name": self._experiment_name, "run_id": self.run_id}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the checkpoint's run, unless this logger was given a run_id or another experiment."""
        if self._run_id is None and state.get("experiment_name") == self._experiment_name:
            self._run_id = state["run_id"]

    def resume_at(self, step: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """Count what the interrupted run logged after its checkpoint (values at `step` beyond the `rows`
        the checkpoint saw, and every value after `step`): the resumed run logs those values again, and
        this logger skips that many at each (metric, step), so the run holds each once."""
        client, run_id = self.experiment, self.run_id
        seen: dict[tuple[str, int], int] = {}
        for row in rows:
            for key in add_prefix(row, self._prefix):
                seen[(self._valid_name(key), step)] = seen.get((self._valid_name(key), step), 0) + 1
        self._already_logged = {}
        for key in client.get_run(run_id).data.metrics:
            for metric in client.get_metric_history(run_id, key):
                if metric.step >= step:
                    self._already_logged[(key, metric.step)] = self._already_logged.get((key, metric.step), 0) + 1
        for place, count in seen.items():
            if place in self._already_logged:
                self._already_logged[place] -= count

    def _experiment(self, client: Any) -> str:
        found = client.get_experiment_by_name(self._experiment_name)
        if found is not None:
            return found.experiment_id
        location = self._artifact_location
        if location is None and self._default_store:
            location = (self._root / "artifacts").resolve().as_uri()
        return client.create_experiment(self._experiment_name, artifact_location=location)

    def _existing_run(self, client: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(self._run_id)
        except MlflowException as err:
            raise ValueError(f"MLFlowLogger: run {self._run_id!r} is not in the tracking store "
                             f"{self._tracking_uri!r}. Resume with the tracking_uri/save_dir of the run that "
                             "wrote the checkpoint, or give another run_id.") from err

    def _valid_name(self, name: str) -> str:
        valid = _BAD_NAME_CHARACTERS.sub("_", name)
        if valid != name and name not in self._renamed:
            self._renamed.add(name)
            warnings.warn(f"MLFlowLogger logs {name!r} as {valid!r}: MLflow names may hold only letters, "
                          "digits and _ - . / : and spaces.", stacklevel=3)
        return valid

    def _wait_for_queued(self) -> None:
        for queued in self._queued:
            queued.wait()
        self._queued = []

    def _log_checkpoints(self, paths: Any) -> None:
        for path in paths:
            if not path or not os.path.exists(path):
                continue
            key = (os.path.abspath(path), os.stat(path).st_mtime_ns)
            if key not in self._logged_checkpoints:
                self._logged_checkpoints.add(key)
                self.experiment.log_artifact(self.run_id, path, artifact_path="checkpoints")


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as err:
        raise ImportError("MLFlowLogger needs mlflow: pip install 'ember[mlflow]'") from err
    return mlflow
