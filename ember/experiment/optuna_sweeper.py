"""ember's Optuna sweeper for Hydra (hydra-optuna-sweeper pins optuna<3; this works with current Optuna).

The search space is `hydra.sweeper.params`, in Hydra's sweep syntax: `interval(a,b)` (float),
`tag(log,interval(a,b))` (log-scale float), `range(a,b[,step])` (int), `choice(a,b,...)` (categorical).
Sampler: TPE seeded with `seed`. The objective is what each trial returns (the monitored metric of its
best checkpoint); a trial that failed is told to Optuna as failed. The study lives in SQLite in the sweep
folder (`optuna.db`): started again with the same `hydra.sweep.dir`, it counts the finished trials and
runs only the rest; trials left running by a killed sweep are marked failed and their parameters asked
again. `pruner` (Optuna's, by name, with `pruner_args`): each trial reports its monitored metric after each
validation (ember/experiment/pruning.py) and one stopped by the pruner is told to Optuna as pruned.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

log = logging.getLogger("ember.experiment.optuna")
DIRECTIONS = {"min": "minimize", "minimize": "minimize", "max": "maximize", "maximize": "maximize"}


def _import_optuna():
    try:
        import optuna
    except ImportError as err:
        raise ImportError("hparams_search=optuna needs Optuna: pip install 'ember[optuna]'") from err
    return optuna


def flatten(params: Any, prefix: str = "") -> dict[str, str]:
    """`{model: {lr: ...}}` (from `+hydra.sweeper.params.model.lr=...`) and `{model.lr: ...}` alike."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) else {name: str(value)})
    return flat


def search_space(params: dict[str, Any]) -> dict[str, Any]:
    """{key: Hydra sweep object} from `hydra.sweeper.params`."""
    parser = OverridesParser.create()
    space = {}
    for key, text in flatten(params).items():
        [override] = parser.parse_overrides([f"{key}={text}"])
        if not override.is_sweep_override():
            raise ValueError(f"hydra.sweeper.params.{key} = {text!r} is not a search space; expected "
                             "interval(a,b), tag(log,interval(a,b)), range(a,b) or choice(a,b,...).")
        space[key] = override.value()
    return space


def suggest(trial: Any, key: str, sweep: Any) -> Any:
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int) and not log_scale:
            return trial.suggest_int(key, sweep.start, sweep.end)
        return trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log_scale)
    if isinstance(sweep, RangeSweep):
        return trial.suggest_int(key, int(sweep.start), int(sweep.stop) - 1, step=int(sweep.step or 1))
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(key, list(sweep.list))
    raise ValueError(f"hydra.sweeper.params.{key}: unsupported sweep {sweep!r}.")


RAISED = "ember_raised"       # user attr of a trial whose run raised (a FAIL that counts as a trial)
RETRY_OF = "ember_retry_of"   # user attr of a trial asked again for an interrupted one (its number)
SURPLUS = "ember_surplus"     # user attr of a trial asked when n_trials were already taken (not run)
BEATING = "ember_beating"     # user attr set once a trial's first heartbeat is recorded
PRUNING_FILE = "optuna_pruning.json"
PRUNED_AT = "ember_pruned_at"  # user attr of a trial its pruner stopped: the epoch it stopped at
PRUNERS = {"none": "NopPruner", "nop": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
           "threshold": "ThresholdPruner", "patient": "PatientPruner", "wilcoxon": "WilcoxonPruner"}


def make_pruner(optuna: Any, name: str | None, arguments: dict[str, Any] | None) -> Any:
    """Optuna's pruner named `name` (none/null: never prunes) with `arguments`."""
    key = "none" if name is None else str(name).lower()
    if key not in PRUNERS or not hasattr(optuna.pruners, PRUNERS[key]):
        raise ValueError(f"hydra.sweeper.pruner={name!r}: expected one of {', '.join(PRUNERS)}.")
    return getattr(optuna.pruners, PRUNERS[key])(**(arguments or {}))


def write_settings(sweep_dir: Path, storage: str, study_name: str, pruner: str | None,
                   arguments: dict[str, Any] | None) -> None:
    settings = {"storage": storage, "study_name": study_name, "pruner": pruner, "pruner_args": arguments or {}}
    (sweep_dir / PRUNING_FILE).write_text(json.dumps(settings, indent=1))


def open_study(optuna: Any, url: str, name: str, direction: str, seed: int | None, heartbeat: int,
               grace: int, pruner: Any = None) -> tuple[Any, Any]:
    """(study, storage): the study in `url`, made if missing. Several workers may start together on one SQLite file: the
    connection waits for the file's lock, and a race to create the tables or the study is tried again."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is "experimental" in Optuna
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                                     grace_period=grace)
            study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                        sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner,
                                        load_if_exists=True)
            return study, storage
        except Exception as err:  # sqlalchemy's OperationalError/IntegrityError: another worker got there first
            if attempt == 4 or "sqlalchemy" not in type(err).__module__ and "Duplicated" not in type(err).__name__:
                raise
            time.sleep(0.5 + attempt)


def counts_as_trial(trial: Any, states: Any) -> bool:
    """Taken out of n_trials: done, pruned, running, or failed because its run raised. Not: interrupted
    (asked again), surplus, or waiting in the queue."""
    if trial.state in (states.COMPLETE, states.PRUNED, states.RUNNING):
        return not trial.user_attrs.get(SURPLUS)
    return trial.state == states.FAIL and bool(trial.user_attrs.get(RAISED))


def ask_again_interrupted(optuna: Any, study: Any, storage: Any, grace: int) -> None:
    """Trials whose worker died (no heartbeat for grace_period) are failed, and their parameters queued.

    A worker killed between asking a trial and its first heartbeat leaves a running trial that Optuna's
    heartbeat check never sees: one without BEATING older than grace_period is failed here."""
    with warnings.catch_warnings():  # "experimental", "supposed to be used with Study.optimize": both known
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = trial.datetime_start or datetime.now()
        if not trial.user_attrs.get(BEATING) and (datetime.now() - started).total_seconds() > grace:
            storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    for trial in trials:
        interrupted = trial.state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get(RAISED) \
            and not trial.user_attrs.get(SURPLUS)
        if interrupted and trial.number not in retried and trial.params:
            log.info(f"trial {trial.number} was interrupted; its parameters are asked again")
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


class Heartbeat:
    """Records the heartbeat of the running trials every `interval` seconds, in a thread, while they run."""

    def __init__(self, storage: Any, trial_ids: list[int], interval: float):
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)

    def beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def consecutive(trials: list[Any]) -> list[list[Any]]:
    """Trials in runs of consecutive numbers (another worker may take numbers in between)."""
    groups: list[list[Any]] = []
    for trial in trials:
        if groups and trial.number == groups[-1][-1].number + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


class OptunaSweeperImpl(Sweeper):
    def __init__(self, direction: str = "minimize", n_trials: int = 10, n_jobs: int = 1, seed: int | None = None,
                 study_name: str = "ember", params: dict[str, str] | None = None, storage: str | None = None,
                 heartbeat_interval: int = 10, grace_period: int = 30, pruner: str | None = None,
                 pruner_args: dict[str, Any] | None = None):
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction!r}: expected one of {', '.join(DIRECTIONS)}.")
        if int(grace_period) <= int(heartbeat_interval):
            raise ValueError(f"hydra.sweeper.grace_period={grace_period} must be longer than "
                             f"hydra.sweeper.heartbeat_interval={heartbeat_interval}.")
        self.direction = DIRECTIONS[direction]
        self.n_trials, self.n_jobs, self.seed, self.study_name = int(n_trials), int(n_jobs), seed, study_name
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params or {})
        self.storage, self.heartbeat, self.grace = storage, int(heartbeat_interval), int(grace_period)
        self.pruner = None if pruner is None else str(pruner)
        self.pruner_args = OmegaConf.to_container(pruner_args, resolve=True) if OmegaConf.is_config(pruner_args) \
            else dict(pruner_args or {})

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        optuna = _import_optuna()
        states = optuna.trial.TrialState
        space = search_space(self.params)
        if not space:
            raise ValueError("hparams_search=optuna has an empty search space: set hydra.sweeper.params, e.g. "
                             "\"+hydra.sweeper.params.model.lr='tag(log,interval(1e-4,1e-1))'\".")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        url = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        pruner = make_pruner(optuna, self.pruner, self.pruner_args)
        study, storage = open_study(optuna, url, self.study_name, self.direction, self.seed, self.heartbeat, self.grace,
                                    pruner)
        write_settings(sweep_dir, url, self.study_name, self.pruner, self.pruner_args)  # read by each trial
        returns = []
        while True:
            ask_again_interrupted(optuna, study, storage, self.grace)
            trials = study.get_trials(deepcopy=False)
            taken = sum(counts_as_trial(t, states) for t in trials)
            if taken >= self.n_trials:
                if not any(t.state == states.RUNNING for t in trials):
                    break
                time.sleep(self.heartbeat)  # another worker's trials: wait for them to finish or go stale
                continue
            mine, overrides = [], {}
            for _ in range(min(self.n_jobs, self.n_trials - taken)):
                with warnings.catch_warnings():  # ember records the heartbeats itself (Heartbeat below)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                    trial = study.ask()
                storage.record_heartbeat(trial._trial_id)
                trial.set_user_attr(BEATING, True)
                # numbers are handed out one by one by the storage: the first n_trials counted ones run
                before = sum(counts_as_trial(t, states) for t in study.get_trials(deepcopy=False)
                             if t.number < trial.number)
                if before >= self.n_trials:
                    trial.set_user_attr(SURPLUS, True)
                    study.tell(trial, state=states.FAIL)
                    continue
                mine.append(trial)
                # TPE seeded by trial number: a study started again, or a second worker, does not repeat
                # the first process's points, and a trial's point does not depend on who asked it
                study.sampler = optuna.samplers.TPESampler(seed=None if self.seed is None else self.seed + trial.number)
                overrides[trial.number] = tuple(arguments) + tuple(f"{k}={suggest(trial, k, s)}"
                                                                   for k, s in space.items())
            for group in consecutive(mine):
                with Heartbeat(storage, [t._trial_id for t in group], self.heartbeat):
                    results = self.launcher.launch([overrides[t.number] for t in group],
                                                   initial_job_idx=group[0].number)
                for trial, result in zip(group, results):
                    value = result.return_value if result.status.name == "COMPLETED" else None
                    if storage.get_trial(trial._trial_id).user_attrs.get(PRUNED_AT) is not None:
                        study.tell(trial, state=states.PRUNED)  # its run stopped early: not a failure
                    elif value is None or (isinstance(value, float) and math.isnan(value)):
                        trial.set_user_attr(RAISED, True)
                        study.tell(trial, state=states.FAIL)
                    else:
                        study.tell(trial, float(value))
                returns.append(results)
        if study.get_trials(deepcopy=False, states=(states.COMPLETE,)):
            best = study.best_trial
            log.info(f"best trial {best.number}: value={best.value} params={best.params}")
            OmegaConf.save(OmegaConf.create({"value": best.value, "params": best.params, "number": best.number}),
                           sweep_dir / "optimization_results.yaml")
        return returns
