"""ember's Optuna sweeper for Hydra (hydra-optuna-sweeper pins optuna<3; this works with current Optuna).

The search space is `hydra.sweeper.params`, in Hydra's sweep syntax: `interval(a,b)` (float),
`tag(log,interval(a,b))` (log-scale float), `range(a,b[,step])` (int), `choice(a,b,...)` (categorical).
Sampler: TPE seeded with `seed`. The objective is what each trial returns (the monitored metric of its
best checkpoint); a trial that failed is told to Optuna as failed. The study lives in SQLite in the sweep
folder (`optuna.db`): started again with the same `hydra.sweep.dir`, it counts the finished trials and
runs only the rest; trials left running by a killed sweep are marked failed and their parameters asked
again.
"""

from __future__ import annotations

import logging
import math
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


class OptunaSweeperImpl(Sweeper):
    def __init__(self, direction: str = "minimize", n_trials: int = 10, n_jobs: int = 1, seed: int | None = None,
                 study_name: str = "ember", params: dict[str, str] | None = None):
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction!r}: expected one of {', '.join(DIRECTIONS)}.")
        self.direction = DIRECTIONS[direction]
        self.n_trials, self.n_jobs, self.seed, self.study_name = int(n_trials), int(n_jobs), seed, study_name
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params or {})

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        optuna = _import_optuna()
        space = search_space(self.params)
        if not space:
            raise ValueError("hparams_search=optuna has an empty search space: set hydra.sweeper.params, e.g. "
                             "\"+hydra.sweeper.params.model.lr='tag(log,interval(1e-4,1e-1))'\".")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        study = optuna.create_study(study_name=self.study_name, storage=storage, direction=self.direction,
                                    sampler=optuna.samplers.TPESampler(seed=self.seed), load_if_exists=True)
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # left running by a killed sweep: failed, and its parameters asked again
            study._storage.set_trial_state_values(stale._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(stale.params)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        returns = []
        while True:
            left = self.n_trials - len(study.get_trials(deepcopy=False, states=finished))
            if left <= 0:
                break
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            overrides = [tuple(arguments) + tuple(f"{k}={suggest(t, k, s)}" for k, s in space.items())
                         for t in trials]
            results = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                value = result.return_value if result.status.name == "COMPLETED" else None
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
            returns.append(results)
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            best = study.best_trial
            log.info(f"best trial {best.number}: value={best.value} params={best.params}")
            OmegaConf.save(OmegaConf.create({"value": best.value, "params": best.params, "number": best.number}),
                           sweep_dir / "optimization_results.yaml")
        return returns
