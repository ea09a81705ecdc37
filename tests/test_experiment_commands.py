"""The `ember` command beyond fit: a fast help path (no torch before Hydra parsed the arguments), and the
validate / test / predict / tune stages on a user package in a tmp dir."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiment_helpers import env, make_user_package

HEAVY = ("torch", "optuna", "mlflow", "wandb", "tensorboard", "matplotlib", "torchmetrics", "lightning")


@pytest.fixture()
def project(tmp_path):
    make_user_package(tmp_path)
    return tmp_path


def imported_modules(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m ember ARGS`; the top-level names of every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ember", *args], cwd=cwd, env=env(),
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
