"""Sweeps through the real `ember` command: Optuna studies shared by workers and killed mid-study (real
SQLite storage), the submitit_local launcher, `ember plot` of a sweep, and DDP under the command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiment_helpers import ember, env, make_user_package, read_run

STUDY = ["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=2", "hparams_search=optuna",
         "+hydra.sweeper.params.model.lr='tag(log,interval(0.001,0.1))'", "hydra.sweep.dir=study",
         "hydra.sweeper.n_trials=6", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4"]


@pytest.fixture()
def project(tmp_path):
    make_user_package(tmp_path)
    return tmp_path


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ember", *args], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"no end in {timeout} s:\n{out[-3000:]}")
    assert process.returncode == 0, out[-3000:]
    return out


def trial_folders(sweep: Path) -> list[Path]:
    return sorted((p.parent for p in sweep.glob("*/run.json")), key=lambda p: int(p.name))


def load_study(sweep: Path):
    import optuna

    return optuna.load_study(study_name="x", storage=f"sqlite:///{sweep / 'optuna.db'}")


def complete_trials(sweep: Path) -> int:
    try:
        return sum(t.state.name == "COMPLETE" for t in load_study(sweep).trials)
    except KeyError:  # the study is not made yet
        return 0


def check_each_complete_trial_ran_once(sweep: Path) -> list:
    study = load_study(sweep)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6
    for trial in complete:
        run = read_run(sweep / str(trial.number))
        assert run["status"] == "done" and run["fit_calls"] == 1
        assert run["metric"] == pytest.approx(trial.value)
        assert f"model.lr={trial.params['model.lr']}" in run["params"]
    assert len({t.params["model.lr"] for t in complete}) == 6  # six different points, none run twice
    return complete


@pytest.mark.slow
def test_two_workers_on_one_storage_split_a_study_without_running_a_trial_twice(project):
    first = start(STUDY, project)
    deadline = time.monotonic() + 120
    while not (project / "study" / "optuna.db").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the second worker joins a study the first one made (both may also start at once)
    second = start(STUDY, project)
    finish(first), finish(second)
    complete = check_each_complete_trial_ran_once(project / "study")
    pids = {read_run(project / "study" / str(t.number))["pid"] for t in complete}
    assert len(pids) == 2  # both workers ran trials
    folders = trial_folders(project / "study")
    assert [f.name for f in folders] == [str(t.number) for t in complete]  # no folder for a surplus trial


@pytest.mark.slow
def test_a_study_killed_after_three_trials_ends_with_six_when_started_again(project):
    driver = start(STUDY, project)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if (project / "study" / "optuna.db").exists() and complete_trials(project / "study") >= 3:
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    killed = load_study(project / "study")
    assert sum(t.state.name == "COMPLETE" for t in killed.trials) in (3, 4)  # 3 done; a 4th may have ended
    finish(start(STUDY, project))
    complete = check_each_complete_trial_ran_once(project / "study")
    # a trial killed between being asked and getting its parameters has nothing to ask again
    interrupted = [t for t in load_study(project / "study").trials if t.state.name == "FAIL" and t.params]
    retried = [t for t in complete if "ember_retry_of" in t.user_attrs]
    assert [t.number for t in interrupted] == [t.user_attrs["ember_retry_of"] for t in retried]
    for trial in retried:  # asked again with the parameters of the trial the kill interrupted
        assert trial.params == killed.trials[trial.user_attrs["ember_retry_of"]].params


@pytest.mark.slow
def test_submitit_local_runs_a_two_trial_sweep_recording_the_failed_one(project):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = ember(["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=1", "model.lr=0.01,0.02",
                  "+model.fail_when_lr=0.02", "hydra.sweep.dir=sweep", "hydra/launcher=submitit_local",
                  "hydra.launcher.timeout_min=5"], cwd=project, timeout=300)
    assert done.returncode == 1 and "1 of 2 trials failed" in done.stderr
    sweep = project / "sweep"
    ok, failed = read_run(sweep / "0"), read_run(sweep / "1")
    assert ok["status"] == "done" and ok["fit_calls"] == 1 and ok["metric"] is not None
    assert failed["status"] == "failed" and "breaks on purpose" in (sweep / "1" / "traceback.txt").read_text()
    assert len({ok["pid"], failed["pid"], None}) == 3  # each trial in a process of its own, started by submitit
    assert (sweep / ".submitit").is_dir() and "1 done, 1 failed" in done.stdout


@pytest.mark.slow
def test_ddp_under_the_command_writes_one_run_folder(project):
    done = ember(["fit", "-cd", "mypkg/configs", "experiment=x", "trainer=ddp", "trainer.devices=2",
                  "trainer.max_epochs=2"], cwd=project, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = [p.parent for p in (project / "runs").rglob("run.json")]
    run = read_run(folder)
    assert run["status"] == "done" and run["fit_calls"] == 1 and run["pid"] != 0
    assert done.stdout.count("fit done:") + done.stderr.count("fit done:") >= 2  # both ranks ran the task
    rows = [r for r in (folder / "csv" / "metrics.csv").read_text().splitlines()[1:]]
    assert len(rows) == len(set(rows))  # rank 0 alone logs
    assert sorted(p.name for p in (folder / "checkpoints").iterdir())[-1] == "last.ckpt"
    assert "hydra.run.dir" not in (folder / ".hydra" / "overrides.yaml").read_text()  # rank 1 wrote no .hydra
