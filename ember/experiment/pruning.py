"""Optuna pruning inside a trial: after each validation of `fit`, the monitored metric is reported to the
trial, and a trial the study's pruner gives up on stops its fit and is marked pruned.

The sweeper and the trial may be in different processes (joblib, submitit): the sweeper writes where its study
lives and which pruner it uses to `optuna_pruning.json` in the sweep folder, and the trial opens the same storage
and loads its trial by number (the job number of a trial is its Optuna trial number). The sweeper reads the
`ember_pruned_at` user attribute the trial sets and tells Optuna the trial was pruned.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from ember.callbacks import Callback
from ember.experiment.optuna_sweeper import PRUNED_AT, PRUNING_FILE, make_pruner

log = logging.getLogger("ember.experiment.optuna")


class OptunaPruning(Callback):
    """Reports `monitor` to `trial` after each validation of fit; stops the fit when the pruner says so."""

    def __init__(self, trial: Any, monitor: str):
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None
        self._warned = False

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state != "fit" or self.pruned_at is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(f"Optuna pruning: no logged {self.monitor!r} after validation; nothing reported "
                              f"(logged: {sorted(trainer.callback_metrics)}).", stacklevel=2)
                self._warned = True
            return
        epoch = int(trainer.current_epoch)
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            self.trial.set_user_attr(PRUNED_AT, epoch)
            trainer.should_stop = True
            log.info(f"trial {self.trial.number} pruned at epoch {epoch} ({self.monitor}={float(value):.6g})")


def pruning_callback(sweep_dir: str | Path, number: int, monitor: str | None) -> OptunaPruning | None:
    """The callback of trial `number` of the study the sweep in `sweep_dir` runs, or None: not an Optuna
    sweep, no pruner, or nothing monitored."""
    path = Path(sweep_dir) / PRUNING_FILE
    if not path.exists() or not monitor:
        return None
    settings = json.loads(path.read_text())
    if str(settings.get("pruner") or "none").lower() in ("none", "nop"):
        return None
    import optuna

    url = settings["storage"]
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    study = optuna.load_study(study_name=settings["study_name"], storage=storage,
                              pruner=make_pruner(optuna, settings["pruner"], settings.get("pruner_args")))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return OptunaPruning(optuna.trial.Trial(study, trial_id), monitor)
