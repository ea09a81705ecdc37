"""WandbLogger: metrics, config, tables, images and checkpoints in a Weights & Biases run.

`logger.experiment` is the real `wandb` run (`wandb.init(...)`, started on first use), so anything
wandb logs (`wandb.Table`, `wandb.Image`, ...) goes through `logger.experiment.log`. Offline
(`offline=True` or `WANDB_MODE=offline`, no API key needed) the run lands in
`<save_dir>/wandb/offline-run-<time>-<id>/`; `wandb sync` uploads it later.

Steps: every row carries `trainer/global_step`, declared with `define_metric` as the x-axis of every
other metric, and wandb's own `_step` simply counts rows. wandb drops a row logged with `step=` lower
than the run's current step, so this is what lets a resumed run log again from an earlier global step.

One run per logger: the run stays open across the stages of a Trainer (fit, then validate and test
write into the same run and, offline, the same folder). It is finished when the process exits (wandb's
own exit hook), when a stage fails or is interrupted (exit code 1), when another WandbLogger of the
process starts its run (so each job of a Hydra multirun has its own), or by `wandb.finish()`. A logger
used again after its run finished continues the same run id (offline, in a new folder).

Flushing: wandb-core buffers the run's `.wandb` file and writes it every
`x_transaction_log_flush_interval` seconds (wandb's default is 15 s, and a killed process loses what is
still buffered). The runs this logger starts use `FLUSH_INTERVAL_S` unless `settings=` sets another, and
`save()`, which the Trainer calls before writing each checkpoint, waits until everything logged so far
has been written.

Resume: `state_dict()` holds the run id, and a fit resumed from a checkpoint calls
`wandb.init(id=<that id>, resume="allow")`: online the same run continues; offline each process writes
its own `offline-run-*-<id>` folder with the same id, and `wandb sync` appends them in order. wandb
cannot delete history, so rows that the interrupted run logged after its last checkpoint stay, and the
resumed run logs those global steps again.
"""

from __future__ import annotations

import logging
import os
import warnings
import time
from typing import Any, Mapping, Sequence

from ember.plain import readable
from ember.loggers.base import Logger, add_prefix

STEP_METRIC = "trainer/global_step"
# How often wandb-core writes the run's buffered records to its `.wandb` file (wandb's default is 15 s):
# short, so that `save()` waits little for the next write. A write with nothing new costs nothing.
FLUSH_INTERVAL_S = 0.05
MAX_FLUSH_WAIT_S = 1.0

log = logging.getLogger(__name__)

# The ids of the runs that WandbLoggers started in this process: such a run may be continued by a logger
# with its id, and is finished when a logger with another id starts its own. A run the user started with
# `wandb.init` is only ever attached to.
_STARTED_RUNS: set[str] = set()


class WandbLogger(Logger):
    """Log to a Weights & Biases run.

    Args:
        name: the run's display name.
        save_dir: the folder under which wandb writes `wandb/<run folder>` (and the default checkpoint
            folder `<save_dir>/<project>/<run id>/checkpoints`).
        version: the run id, to continue that run (same as `id`).
        offline: write locally only, to be uploaded with `wandb sync`.
        dir: same as `save_dir` (wins when given).
        id: the run id, to continue that run.
        anonymous: accepted for Lightning code; wandb removed anonymous mode, so it has no effect.
        project: default `$WANDB_PROJECT`, else 'lightning_logs'.
        log_model: True logs the best checkpoint as a model artifact when fit ends; 'all' logs every
            checkpoint as it is saved.
        prefix: prepended to every metric name as `<prefix>-<name>`.
        entity: the user or team that owns the run.
        **kwargs: passed to `wandb.init` (`tags`, `group`, `config`, `settings`, ...).

    Example:
        >>> trainer = ember.Trainer(logger=WandbLogger(project="mnist", offline=True))
    """

    def __init__(self, name: str | None = None, save_dir: str | os.PathLike = ".", version: str | None = None,
                 offline: bool = False, dir: str | os.PathLike | None = None, id: str | None = None,
                 anonymous: bool | None = None, project: str | None = None, log_model: bool | str = False,
                 prefix: str = "", entity: str | None = None, **kwargs: Any):
        if log_model not in (True, False, "all"):
            raise ValueError(f"WandbLogger(log_model={log_model!r}): expected False, True or 'all'.")
        _import_wandb()  # fail here, not at the first step, when wandb is missing
        self._save_dir = os.fspath(dir if dir is not None else save_dir)
        self._project = project or os.environ.get("WANDB_PROJECT", "lightning_logs")
        self._id = version or id
        self._init_args = dict(name=name, project=self._project, entity=entity, dir=self._save_dir,
                               mode="offline" if offline else None, resume="allow")
        self._init_args.update(kwargs)
        self._log_model = log_model
        self._prefix = prefix
        self._run: Any = None
        self._owns_run = True
        self._unsaved = False  # rows logged since the last save()
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: set[tuple[str, int]] = set()

    @property
    def experiment(self) -> Any:
        """The wandb run: started (or continued, with this logger's id) on first use and after it was
        finished; a run already started with `wandb.init` is used as it is."""
        if self._run is not None and _finished(self._run):
            self._run = None  # finished by wandb.finish() or by another logger's run: continue the same id
        if self._run is None:
            wandb = _import_wandb()
            active = wandb.run
            ours = active is not None and active.id in _STARTED_RUNS
            if active is not None and (active.id == self._id or (self._id is None and not ours)):
                self._run, self._owns_run = active, ours
            else:
                os.makedirs(self._save_dir, exist_ok=True)
                init_args = dict(self._init_args)
                if active is not None:
                    # wandb's default would hand back the active run: finish a run an earlier logger
                    # started (its job is over), leave one the user started alone
                    init_args.setdefault("reinit", "finish_previous" if ours else "create_new")
                init_args["settings"] = _with_flush_interval(wandb, init_args.get("settings"))
                self._run, self._owns_run = wandb.init(id=self._id, **init_args), True
                _STARTED_RUNS.add(self._run.id)
            self._id = self._run.id
            self._run.define_metric(STEP_METRIC)
            self._run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        return self._run

    @property
    def name(self) -> str:
        """The project (as in Lightning)."""
        return self._project

    @property
    def version(self) -> str:
        """The run id."""
        return self._id if self._id is not None else self.experiment.id

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def run_folders(self) -> list[str]:
        """The local folders of this project's runs (`<save_dir>/<project>/<run id>`), or of the run this
        logger was given: where `fit(ckpt_path="last")` looks for checkpoints."""
        if self._id is not None:
            return [self.log_dir]
        project = os.path.join(self._save_dir, self._project)
        if not os.path.isdir(project):
            return []
        return [os.path.join(project, name) for name in os.listdir(project)
                if os.path.isdir(os.path.join(project, name))]

    @property
    def log_dir(self) -> str:
        """A local folder for this run's files, `<save_dir>/<project>/<run id>` (the run's own wandb
        folder is `experiment.dir`)."""
        return os.path.join(self._save_dir, self._project, self.version)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        row = add_prefix(metrics, self._prefix)
        if step is not None:
            row[STEP_METRIC] = step
        self.experiment.log(row)
        self._unsaved = True

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        # readable(): W&B's config holds JSON-like values, and shows them as hparams.yaml does
        self.experiment.config.update(readable(params), allow_val_change=True)  # a dict or a Namespace
        self._unsaved = True

    def log_table(self, key: str, columns: Sequence[str] | None = None, data: Sequence[Sequence[Any]] | None = None,
                  dataframe: Any = None, step: int | None = None) -> None:
        """Log a `wandb.Table` made of `columns` and `data` (rows), or of a pandas `dataframe`.

        Example:
            >>> logger.log_table("samples", columns=["text", "label"], data=[["hi", 1], ["bye", 0]])
        """
        wandb = _import_wandb()
        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    def log_image(self, key: str, images: Sequence[Any], step: int | None = None, **kwargs: Sequence[Any]) -> None:
        """Log a list of images (tensors, arrays, PIL images or paths) as `wandb.Image`s; each keyword is
        a list with one entry per image, e.g. `caption=[...]`.

        Example:
            >>> logger.log_image("samples", [img1, img2], caption=["a cat", "a dog"])
        """
        wandb = _import_wandb()
        for arg, values in kwargs.items():
            if len(values) != len(images):
                raise ValueError(f"WandbLogger.log_image({key!r}): {arg} has {len(values)} entries for "
                                 f"{len(images)} images; give one per image.")
        items = [wandb.Image(image, **{arg: values[i] for arg, values in kwargs.items()})
                 for i, image in enumerate(images)]
        self.log_metrics({key: items}, step)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Let wandb log `model`'s gradients (and/or parameters) every `log_freq` steps."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._checkpoint_callback = checkpoint_callback
        if self._log_model == "all":
            self._log_checkpoints(checkpoint_callback.best_k_models)

    def save(self) -> None:
        """Wait until every row logged so far is in the run's `.wandb` file, so that a process killed
        after this call keeps them (the Trainer calls it before writing each checkpoint). Typically
        waits half of wandb-core's flush interval, and only when something was logged since the last call.
        A run whose flush interval is over `MAX_FLUSH_WAIT_S` (one started with `wandb.init` keeps
        wandb's 15 s) is not waited for: that would stall every checkpoint."""
        run = self._run
        if run is None or not self._unsaved or _finished(run):
            return
        settings = run.settings
        interval = getattr(settings, "x_transaction_log_flush_interval", None)
        path = settings.sync_file
        if not interval or interval > MAX_FLUSH_WAIT_S or not os.path.exists(path):
            return
        # a round trip to wandb-core: when it returns, the core has taken every row sent before it
        run.summary.keys()
        size = os.path.getsize(path)
        # then one more (harmless, repeated) record, so that the file grows at the next flush even when
        # the rows were already written: growth past `size` means a flush came after the rows
        run.define_metric(STEP_METRIC)
        deadline = time.monotonic() + 2 * interval + 1.0
        while os.path.getsize(path) <= size:
            if time.monotonic() > deadline:
                log.warning("WandbLogger.save: wandb-core wrote nothing to %s within %.1f s; the rows logged "
                            "since the last checkpoint may be lost if the process is killed now.", path,
                            2 * interval + 1.0)
                break
            time.sleep(min(interval / 10, 0.01))
        self._unsaved = False

    def finalize(self, status: str) -> None:
        """The end of a stage: log the checkpoints that `log_model` asks for and write what was logged.
        A stage that failed or was interrupted finishes the run (exit code 1); after a success the run
        stays open for the next stage (see the module docstring for when it is finished)."""
        if self._run is None or _finished(self._run):
            return
        callback = self._checkpoint_callback
        if callback is not None and self._log_model == "all":
            self._log_checkpoints([*callback.best_k_models, callback.last_model_path])
        elif callback is not None and self._log_model:
            self._log_checkpoints([callback.best_model_path or callback.last_model_path])
        if status != "success" and self._owns_run:
            self._run.finish(exit_code=1)
            self._run = None
        else:
            self.save()

    def resume_at(self, step: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """W&B cannot delete what a run logged: say that the rows the interrupted run logged after its last
        checkpoint will be there twice (with the same values, when the resume is exact)."""
        warnings.warn(f"WandbLogger: resuming run {self.version!r} at step {step}. W&B cannot delete logged rows, so "
                      "the rows the interrupted run logged after its last checkpoint appear twice in the run (same "
                      "steps, same values). CSVLogger, TensorBoardLogger and MLFlowLogger hold each row once.",
                      UserWarning, stacklevel=2)

    def state_dict(self) -> dict[str, Any]:
        return {"project": self._project, "id": self.version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the checkpoint's run, unless this logger was given an id or another project."""
        if self._id is None and self._run is None and state.get("project") == self._project:
            self._id = state["id"]

    def _log_checkpoints(self, paths: Any) -> None:
        wandb, callback = _import_wandb(), self._checkpoint_callback
        for path in paths:
            if not path or not os.path.exists(path):
                continue
            key = (os.path.abspath(path), os.stat(path).st_mtime_ns)
            if key in self._logged_checkpoints:
                continue
            self._logged_checkpoints.add(key)
            score = callback.best_k_models.get(path) if callback.monitor else None
            artifact = wandb.Artifact(f"model-{self.version}", type="model",
                                      metadata={"file": os.path.basename(path), "monitor": callback.monitor,
                                                "score": None if score is None else float(score)})
            artifact.add_file(path, name="model.ckpt")
            aliases = ["latest", "best"] if path == callback.best_model_path else ["latest"]
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._unsaved = True


def _finished(run: Any) -> bool:
    """The run was finished (wandb has no public flag for it; `_is_finished` is what `finish()` sets)."""
    return bool(getattr(run, "_is_finished", False))


def _with_flush_interval(wandb: Any, settings: Any) -> Any:
    """`settings` (None, a dict or a `wandb.Settings`) with wandb-core's flush interval set to
    FLUSH_INTERVAL_S, unless the caller set it."""
    key = "x_transaction_log_flush_interval"
    if key not in wandb.Settings.model_fields:
        return settings  # a wandb without the buffered writer
    if settings is None:
        return wandb.Settings(**{key: FLUSH_INTERVAL_S})
    if isinstance(settings, Mapping):
        return {key: FLUSH_INTERVAL_S, **settings}
    if key in settings.model_fields_set:
        return settings
    return settings.model_copy(update={key: FLUSH_INTERVAL_S})


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as err:
        raise ImportError("WandbLogger needs wandb: pip install 'ember[wandb]'") from err
    return wandb
