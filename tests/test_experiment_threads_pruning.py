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
