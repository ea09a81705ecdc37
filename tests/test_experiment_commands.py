"""The `ember` command beyond fit: a fast help path (no torch before Hydra parsed the arguments), and the
validate / test / predict / tune stages on a user package in a tmp dir."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiment_helpers import ember, env, make_user_package, read_run, run_folders

HEAVY = ("torch", "optuna", "mlflow", "wandb", "tensorboard", "matplotlib", "torchmetrics", "lightning")


@pytest.fixture()
def project(tmp_path):
    make_user_package(tmp_path)
    return tmp_path


def imported_modules(args: list[str], cwd, **environ: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m ember ARGS`; the top-level names of every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ember", *args], cwd=cwd, env={**env(), **environ},
                          capture_output=True, text=True, timeout=120)
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2}
    return done, names


@pytest.mark.parametrize("args, shows", [
    (["--help"], "COMMAND"),
    (["fit", "--help"], "trainer: cpu, ddp, default"),
    (["fit", "-cd", "mypkg/configs", "experiment=x", "--cfg", "job"], "_target_: mypkg.model.Regressor"),
])
def test_help_and_cfg_job_do_not_import_torch_or_loggers(project, args, shows):
    done, names = imported_modules(args, project)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shows in done.stdout
    assert "ember" in names and (args == ["--help"] or "hydra" in names)  # the reading of imports works
    assert not names & set(HEAVY), sorted(names & set(HEAVY))
    assert not (project / "runs").exists()


def fitted(project) -> tuple[Path, float]:
    """Fit mypkg for 2 epochs with the command: (last.ckpt, the val_loss logged with those weights)."""
    fit = ember(["fit", "-cd", "mypkg/configs", "experiment=x", "trainer.max_epochs=2"], cwd=project)
    assert fit.returncode == 0, fit.stderr
    [folder] = run_folders(project)
    rows = list(csv.DictReader(open(folder / "csv" / "metrics.csv")))
    return folder / "checkpoints" / "last.ckpt", float([r["val_loss"] for r in rows if r.get("val_loss")][-1])


def run_stage(project, stage: str, *overrides: str) -> tuple[Path, dict]:
    """`ember STAGE -cd mypkg/configs experiment=x OVERRIDES`: its new run folder and run.json."""
    before = set(run_folders(project))
    done = ember([stage, "-cd", "mypkg/configs", "experiment=x", *overrides], cwd=project)
    assert done.returncode == 0, done.stderr
    [folder] = set(run_folders(project)) - before
    run = read_run(folder)
    assert run["status"] == "done" and run["stage"] == stage and run["fit_calls"] == 0
    assert not (folder / "checkpoints").exists()
    return folder, run


def test_test_command_records_the_test_metric_of_a_checkpoint(project):
    last, val_loss = fitted(project)
    _, run = run_stage(project, "test", f"ckpt_path={last}")
    assert run["ckpt_path"] == str(last) and run["monitor"] == "val_loss"
    # mypkg validates and tests on the same 64 rows: the test loss of last.ckpt is the val_loss logged with it
    assert run["metric"] == pytest.approx(val_loss, rel=1e-5)


@pytest.mark.slow
def test_validate_predict_and_tune_commands(project):
    last, val_loss = fitted(project)
    _, run = run_stage(project, "validate", f"ckpt_path={last}")
    assert run["metric"] == pytest.approx(val_loss, rel=1e-5)
    folder, _ = run_stage(project, "predict", f"ckpt_path={last}")
    predictions = torch.load(folder / "predictions.pt", weights_only=True)
    assert [p.shape for p in predictions] == [(16, 1)] * 4  # 64 rows in batches of 16
    _, run = run_stage(project, "tune", "tune.lr_find.num_training=30", "tune.lr_find.min_lr=0.001",
                       "tune.lr_find.max_lr=0.5", "tune.scale_batch_size={init_val: 2, max_trials: 3, steps_per_trial: 1}")
    assert run["tuned"]["batch_size"] == 8  # power mode, three trials: 2, 4, 8 (nothing runs out of memory)
    assert 0.001 <= run["tuned"]["lr"] <= 0.5 and run["metric"] == run["tuned"]["lr"]


def test_a_typo_in_a_tuner_argument_exits_2_naming_the_nearest(project):
    done = ember(["tune", "-cd", "mypkg/configs", "experiment=x", "+tune.lr_find.num_trainig=5"], cwd=project)
    assert done.returncode == 2
    assert "tune.lr_find.num_trainig" in done.stderr and "Did you mean tune.lr_find.num_training?" in done.stderr
    assert not (project / "runs").exists()


REPO = Path(__file__).resolve().parents[1]


def test_the_mnist_recipe_runs_as_an_experiment_config(tmp_path):
    # from the repository root, as its README says; the run folder goes under paths.root
    done = ember(["fit", "experiment=mnist", "trainer.max_epochs=1", "+trainer.limit_train_batches=4",
                  "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
                  f"paths.root={tmp_path}"], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = run_folders(tmp_path, "mnist")
    run = read_run(folder)
    assert run["status"] == "done" and run["monitor"] == "val_acc" and 0 <= run["metric"] <= 1
    assert set(run["test_metrics"]) == {"test_loss", "test_acc"}  # test_after_fit: the best checkpoint tested
    [best] = (folder / "checkpoints").glob("epoch=0-val_acc=*.ckpt")
    assert float(best.stem.split("=")[-1]) == pytest.approx(run["metric"], abs=1e-4)
    config = (folder / ".hydra" / "config.yaml").read_text()
    assert "_target_: recipes.mnist.model.DigitClassifier" in config and "deterministic: true" in config


@pytest.mark.slow
@pytest.mark.parametrize("recipe, files", [
    ("knowledge_tracing", ["run.json"]),
    ("mnist_autoencoder", ["reconstructions/epoch=000.png"]),
    ("question_generation", ["vocab.json", "test_predictions.tsv"]),
    ("cola", ["misclassified"]),
])
def test_the_other_recipes_run_as_experiment_configs(tmp_path, recipe, files):
    done = ember(["fit", f"experiment={recipe}", "trainer=fdr", f"paths.root={tmp_path}"], cwd=REPO, timeout=900,
                 env={**env(), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = run_folders(tmp_path, recipe)
    assert read_run(folder)["status"] == "done"
    for name in files:
        assert (folder / name).exists(), name


def test_tab_completion_through_the_installed_script_completes_groups_and_user_options(project):
    script = subprocess.run([sys.executable, "-m", "ember", "fit", "-sc", "install=bash"], cwd=project, env=env(),
                            capture_output=True, text=True, timeout=120)
    assert "complete -o nospace -o default -F hydra_bash_completion ember" in script.stdout
    # what the script runs on <TAB>: `ember -sc query=bash` with the typed line in COMP_LINE
    for line, expected in [("ember fit -cd mypkg/configs experiment=x trainer=", "trainer=fdr"),
                           ("ember fit -cd mypkg/configs experiment=", "experiment=x"),
                           ("ember test -cd mypkg/configs mod", "model=")]:
        done, names = imported_modules(["-sc", "query=bash"], project, COMP_LINE=line, COMP_POINT=str(len(line)))
        assert expected in done.stdout.split(), (line, done.stdout, done.stderr[-2000:])
        assert "torch" not in names
