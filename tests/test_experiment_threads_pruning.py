"""Torch threads per job (`threads:`, one per job under the joblib launcher) and Optuna pruning of bad trials,
through the real `ember` command, the real joblib launcher and a real SQLite study."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiment_helpers import ember, env, make_user_package, read_run, run_folders

FIT = ["fit", "-cd", "mypkg/configs", "experiment=x", "trainer.max_epochs=1"]


@pytest.fixture()
def project(tmp_path):
    make_user_package(tmp_path)
    return tmp_path


def free_env() -> dict[str, str]:
    """The tests' environment without the OMP_NUM_THREADS=1 it sets: torch's own default applies."""
    free = env()
    free.pop("OMP_NUM_THREADS")
    return free


@pytest.mark.slow
def test_joblib_jobs_get_one_torch_thread_each_unless_threads_is_set(project):
    for threads, expected, sweep in ((None, 1, "one"), (3, 3, "three")):
        args = [*FIT[:3], "-m", *FIT[3:], "model.lr=0.01,0.02", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                f"hydra.sweep.dir={sweep}", *([f"threads={threads}"] if threads else [])]
        done = ember(args, cwd=project, timeout=120, env=free_env())
        assert done.returncode == 0, done.stderr[-3000:]
        runs = [read_run(project / sweep / str(n)) for n in (0, 1)]
        assert [r["threads"] for r in runs] == [expected, expected]


def test_a_plain_run_keeps_torchs_default_threads_and_threads_sets_them(project):
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           env=free_env(), capture_output=True, text=True, timeout=60)
    default = int(fresh.stdout)
    assert ember(FIT, cwd=project, env=free_env()).returncode == 0
    assert ember([*FIT, "threads=3", "name=three"], cwd=project, env=free_env()).returncode == 0
    [plain] = run_folders(project)
    [three] = run_folders(project, "three")
    assert read_run(plain)["threads"] == default
    assert read_run(three)["threads"] == 3


def study_trials(sweep):
    import optuna

    return optuna.load_study(study_name="x", storage=f"sqlite:///{sweep / 'optuna.db'}").trials


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib"]], ids=["basic", "joblib"])
def test_optuna_median_pruner_stops_bad_trials_early_and_records_them_pruned(project, launcher):
    # seed 6 asks bad=false for trial 0 (the median pruner's one start-up trial), then bad=true three times;
    # under joblib each trial runs in a worker process that opens the study's SQLite storage itself
    args = ["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=4", "hparams_search=optuna",
            "+hydra.sweeper.params.model.bad='choice(false,true)'", "hydra.sweep.dir=study",
            "hydra.sweeper.n_trials=4", "hydra.sweeper.seed=6", "hydra.sweeper.pruner=median",
            "+hydra.sweeper.pruner_args={n_startup_trials: 1, n_warmup_steps: 0}", *launcher]
    done = ember(args, cwd=project, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]  # pruned trials are not failures
    trials = study_trials(project / "study")
    states = {t.number: t.state.name for t in trials}
    assert len(trials) == 4 and set(states.values()) <= {"COMPLETE", "PRUNED"}
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["model.bad"] for t in pruned) and states[0] == "COMPLETE"
    for trial in trials:
        run = read_run(project / "study" / str(trial.number))
        if trial.state.name == "PRUNED":  # its fit stopped at the first reported epoch, not after 4
            assert sorted(trial.intermediate_values) == [0] and run["status"] == "pruned"
            assert run["pruned_at_epoch"] == 0 and run["fit_calls"] == 1
        else:
            assert sorted(trial.intermediate_values) == [0, 1, 2, 3] and run["status"] == "done"
    assert f"{4 - len(pruned)} done, 0 failed, {len(pruned)} pruned" in done.stdout
    assert "| pruned |" in (project / "study" / "sweep.md").read_text()
    if not launcher:  # started again: pruned trials count as finished, nothing runs, still exit 0
        again = ember(args, cwd=project, timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(study_trials(project / "study")) == 4
        assert all(read_run(project / "study" / str(n))["fit_calls"] == 1 for n in range(4))
