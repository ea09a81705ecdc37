"""The experiment layer through the real `ember` command (Hydra, launchers) on a user package in a tmp dir."""

from __future__ import annotations

import csv
import os
import signal
import sys
import time

import pytest
import torch
import yaml

from experiment_helpers import ember, env, make_user_package, read_run, run_folders
from ember.experiment.instantiate import ConfigError, check_targets, config_package


@pytest.fixture()
def project(tmp_path):
    make_user_package(tmp_path)
    return tmp_path


def test_fit_writes_one_run_folder(project):
    done = ember(["fit", "-cd", "mypkg/configs", "experiment=x", "trainer.max_epochs=2"], cwd=project)
    assert done.returncode == 0, done.stderr
    [folder] = run_folders(project)
    assert folder.relative_to(project).parts[:2] == ("runs", "x")
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2 and config["model"]["_target_"] == "mypkg.model.Regressor"
    assert (folder / "checkpoints" / "last.ckpt").exists()
    rows = list(csv.DictReader(open(folder / "csv" / "metrics.csv")))
    assert {r["epoch"] for r in rows if r.get("val_loss")} == {"0", "1"}
    run = read_run(folder)
    assert run["status"] == "done" and run["fit_calls"] == 1
    assert run["command"] == "ember fit -cd mypkg/configs experiment=x trainer.max_epochs=2"
    best = torch.load(next((folder / "checkpoints").glob("epoch=*.ckpt")), weights_only=True)
    best_score = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint")][0]["best_model_score"]
    assert run["metric"] == pytest.approx(float(best_score))


def ember_in_process(args, project, monkeypatch, capsys):
    """The command in this process (no torch import to pay for): (exit code, stderr)."""
    from ember.cli import main

    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as exited:
        main(args)
    return exited.value.code, capsys.readouterr().err


def test_typo_in_a_trainer_key_exits_2_naming_the_nearest_and_leaves_no_folder(project, monkeypatch, capsys):
    code, err = ember_in_process(["fit", "-cd", "mypkg/configs", "experiment=x", "+trainer.max_epoch=2"], project,
                                 monkeypatch, capsys)
    assert code == 2
    assert "trainer.max_epoch" in err and "Did you mean trainer.max_epochs?" in err
    assert not (project / "runs").exists()
    assert "EMBER_HYDRA_ENTRY" not in os.environ  # the command put back the environment it found


def test_a_target_outside_the_allowlist_is_refused_before_import(project, monkeypatch, capsys):
    (project / "mypkg" / "configs" / "model" / "evil.yaml").write_text("_target_: os.system\ncommand: touch pwned\n")
    code, err = ember_in_process(["fit", "-cd", "mypkg/configs", "experiment=x", "model=evil"], project,
                                 monkeypatch, capsys)
    assert code == 2
    assert "model._target_ = 'os.system' is not allowed" in err and "allow: [os]" in err
    assert not (project / "pwned").exists() and not (project / "runs").exists()
    assert "mypkg.model" not in sys.modules  # nothing of the config was imported


def test_target_checks_are_by_name_without_import():
    check_targets({"model": {"_target_": "torch.nn.Linear", "act": {"_target_": "mypkg.Act"}}}, ["mypkg"])
    for bad in ("subprocess.Popen", "builtins.eval", "torchx.evil", "os.system"):
        with pytest.raises(ConfigError, match=f"data.items\\[0\\]._target_ = '{bad}'"):
            check_targets({"data": {"items": [{"_target_": bad}]}}, ["mypkg"])


def test_config_package_is_the_package_above_the_config_folder(tmp_path):
    (tmp_path / "a" / "b" / "configs").mkdir(parents=True)
    assert config_package(tmp_path / "a" / "b" / "configs") is None
    (tmp_path / "a" / "__init__.py").write_text("")
    (tmp_path / "a" / "b" / "__init__.py").write_text("")
    assert config_package(tmp_path / "a" / "b" / "configs") == "a"


def test_sweep_with_a_failing_trial_runs_the_rest_and_exits_nonzero(project):
    done = ember(["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=1",
                  "model.lr=0.01,0.02,0.03,0.04", "+model.fail_when_lr=0.02", "hydra.sweep.dir=sweep"], cwd=project)
    assert done.returncode == 1
    assert "1 of 4 trials failed" in done.stderr
    sweep = project / "sweep"
    status = {n: read_run(sweep / str(n))["status"] for n in range(4)}
    assert status == {0: "done", 1: "failed", 2: "done", 3: "done"}
    assert "breaks on purpose" in (sweep / "1" / "traceback.txt").read_text()
    rows = list(csv.DictReader(open(sweep / "sweep.csv")))
    assert [r["status"] for r in rows] == ["done", "failed", "done", "done"]
    assert "model.lr=0.02" in rows[1]["params"] and rows[1]["objective"] == ""
    for n in (0, 2, 3):
        assert float(rows[n]["objective"]) == pytest.approx(read_run(sweep / str(n))["metric"])
    assert "| 1 | " in (sweep / "sweep.md").read_text() and "3 done, 1 failed" in done.stdout


def test_compose_builds_what_the_command_builds(project, tmp_path):
    from ember.experiment import compose

    trainer, module, datamodule = compose(str(project / "mypkg" / "configs"),
                                          ["experiment=x", "trainer.max_epochs=1", "model.lr=0.2"],
                                          output_dir=str(tmp_path / "out"))
    assert trainer.max_epochs == 1 and module.hparams.lr == 0.2 and type(datamodule).__name__ == "Data"
    assert [type(c).__name__ for c in trainer.callbacks if "Checkpoint" in type(c).__name__] == ["ModelCheckpoint"]
    trainer.fit(module, datamodule=datamodule)
    assert (tmp_path / "out" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_killed_sweep_started_again_skips_done_trials_and_resumes_the_interrupted(project):
    args = ["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "model.lr=0.01,0.02,0.03",
            "+model.die_at_step=6", "hydra.sweep.dir=sweep", "callbacks.early_stopping=null"]
    marker = project / "died"
    first = ember(args, cwd=project, env={**env(), "MYPKG_DIE_MARKER": str(marker)})
    assert first.returncode == -signal.SIGKILL and marker.exists()
    assert read_run(project / "sweep" / "0")["status"] == "running"  # trial 0 was killed at step 6
    assert (project / "sweep" / "0" / "checkpoints" / "last.ckpt").exists()
    second = ember(args, cwd=project, env={**env(), "MYPKG_DIE_MARKER": str(marker)})
    assert second.returncode == 0, second.stderr
    runs = [read_run(project / "sweep" / str(n)) for n in range(3)]
    assert [r["status"] for r in runs] == ["done"] * 3
    assert runs[0]["fit_calls"] == 2 and runs[0]["ckpt_path"].endswith("sweep/0/checkpoints/last.ckpt")
    assert [r["fit_calls"] for r in runs[1:]] == [1, 1]
    last = torch.load(project / "sweep" / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12  # 3 epochs of 4 batches: the resumed trial finished its run


@pytest.mark.slow
def test_sweep_started_again_after_it_finished_runs_no_fit(project):
    args = ["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=1", "model.lr=0.01,0.02",
            "hydra.sweep.dir=sweep", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert ember(args, cwd=project, timeout=300).returncode == 0
    again = ember(args, cwd=project, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [read_run(project / "sweep" / str(n))["fit_calls"] for n in range(2)] == [1, 1]
    assert "2 done, 0 failed" in again.stdout


@pytest.mark.slow
def test_optuna_search_is_seeded_and_a_study_resumes_from_its_storage(project):
    import optuna

    args = ["fit", "-cd", "mypkg/configs", "-m", "experiment=x", "trainer.max_epochs=1", "hparams_search=optuna",
            "+hydra.sweeper.params.model.lr='tag(log,interval(0.001,0.1))'", "hydra.sweep.dir=study"]
    assert ember([*args, "hydra.sweeper.n_trials=2"], cwd=project, timeout=300).returncode == 0
    more = ember([*args, "hydra.sweeper.n_trials=3"], cwd=project, timeout=300)
    assert more.returncode == 0, more.stderr
    study = optuna.load_study(study_name="x", storage=f"sqlite:///{project / 'study' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for trial in study.trials:
        assert trial.value == pytest.approx(read_run(project / "study" / str(trial.number))["metric"])
    assert [read_run(project / "study" / str(n))["fit_calls"] for n in range(3)] == [1, 1, 1]
    sampler = optuna.samplers.TPESampler(seed=1234)  # the first trial of a seeded TPE is reproducible
    fresh = optuna.create_study(sampler=sampler)
    assert fresh.ask().suggest_float("model.lr", 0.001, 0.1, log=True) == pytest.approx(study.trials[0].params["model.lr"])


@pytest.mark.slow
def test_ckpt_path_auto_resumes_the_newest_run_of_the_same_config(project):
    first = ember(["fit", "-cd", "mypkg/configs", "experiment=x", "trainer.max_epochs=1"], cwd=project)
    assert first.returncode == 0, first.stderr
    time.sleep(1.1)  # the next run folder gets a later name
    second = ember(["fit", "-cd", "mypkg/configs", "experiment=x", "trainer.max_epochs=1", "ckpt_path=auto"],
                   cwd=project)
    assert second.returncode == 0, second.stderr
    older, newer = sorted(run_folders(project), key=lambda f: read_run(f)["started"])
    assert read_run(newer)["ckpt_path"] == str(older / "checkpoints" / "last.ckpt")
