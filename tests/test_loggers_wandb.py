"""WandbLogger offline, read back from the run's `.wandb` record file with wandb's own reader
(`wandb leet inspect --json`, run through the wandb-core binary that wandb ships)."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.loggers import CSVLogger, WandbLogger

from logger_helpers import Crash, CrashAt, Tiny, fit, loader

TESTS = Path(__file__).resolve().parent

wandb = pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """W&B offline, with no API key, and every folder wandb writes under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / variable.lower()))
    yield
    if wandb.run is not None:  # a run stays open after fit: the next test starts from none
        wandb.finish()


def run_folders(save_dir, run_id):
    """The offline run folders of `run_id`, oldest first."""
    return sorted((save_dir / "wandb").glob(f"offline-run-*-{run_id}*"))


def records(run_folder):
    """Every record of the run folder's `.wandb` file, as wandb's reader prints them."""
    run_file = next(run_folder.glob("run-*.wandb"))
    command = [wandb.util.get_core_path(), "leet", "inspect", "--no-observability", "--json",
               "--run-file", str(run_file), str(run_folder.parent)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def all_run_folders(save_dir):
    return sorted((save_dir / "wandb").glob("offline-run-*"))


def of_type(all_records, kind):
    return [r[kind] for r in all_records if r["type"] == kind]


def rows(all_records):
    """The history rows without wandb's own `_step`, `_runtime`, `_timestamp`."""
    return [{k: v for k, v in h["item"].items() if not k.startswith("_")} for h in of_type(all_records, "history")]


def test_rows_config_and_run_read_back_as_logged(tmp_path):
    csv_logger = CSVLogger(tmp_path, name="csv")
    logger = WandbLogger(name="first", save_dir=tmp_path, project="proj")
    fit([csv_logger, logger], val=True, max_epochs=2, default_root_dir=tmp_path)

    [folder] = run_folders(tmp_path, logger.version)
    found = records(folder)
    [run] = of_type(found, "run")
    assert (run["project"], run["run_id"], run["display_name"]) == ("proj", logger.version, "first")
    assert of_type(found, "config")[-1]["update"] == {"lr": 0.1, "sizes": {"hidden": 2}}
    assert {"name": "trainer/global_step", "options": {"defined": True}} in of_type(found, "metric")
    assert of_type(found, "exit") == []  # the run stays open for a later stage
    with open(csv_logger.metrics_file_path) as f:
        expected = [{("trainer/global_step" if k == "step" else k): (int(v) if k in ("step", "epoch") else float(v))
                     for k, v in row.items() if v} for row in csv.DictReader(f)]
    assert rows(found) == expected
    assert logger.log_dir == str(tmp_path / "proj" / logger.version)
    wandb.finish()  # the explicit end of the run (or the process's exit)
    assert of_type(records(folder), "exit")[-1]["exit_code"] == 0


class TinyWithTest(Tiny):
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))


def test_fit_validate_and_test_write_one_run(tmp_path):
    logger = WandbLogger(save_dir=tmp_path)
    trainer = fit(logger, val=True, max_epochs=2, module=TinyWithTest)
    validated = trainer.validate(dataloaders=loader(), verbose=False)
    tested = trainer.test(dataloaders=loader(), verbose=False)

    [folder] = all_run_folders(tmp_path)
    found = records(folder)
    assert [run["run_id"] for run in of_type(found, "run")] == [logger.version]
    logged = rows(found)
    assert [row["trainer/global_step"] for row in logged if "train_loss" in row] == list(range(16))
    assert [row["val_loss"] for row in logged if "val_loss" in row][-1] == pytest.approx(validated[0]["val_loss"])
    assert [row["test_loss"] for row in logged if "test_loss" in row] == [pytest.approx(tested[0]["test_loss"])]


def test_a_later_logger_finishes_the_run_of_an_earlier_one(tmp_path):
    """As the jobs of a Hydra multirun in one process: each job's logger writes its own run."""
    first, second = WandbLogger(save_dir=tmp_path / "a"), WandbLogger(save_dir=tmp_path / "b")
    fit(first, max_steps=2)
    fit(second, max_steps=3)
    assert first.version != second.version
    [a], [b] = all_run_folders(tmp_path / "a"), all_run_folders(tmp_path / "b")
    assert of_type(records(a), "exit")[-1]["exit_code"] == 0
    assert [row["trainer/global_step"] for row in rows(records(a))] == [0, 1]
    assert [row["trainer/global_step"] for row in rows(records(b))] == [0, 1, 2]


def test_a_failed_fit_finishes_the_run_with_exit_code_1(tmp_path):
    logger = WandbLogger(save_dir=tmp_path)
    with pytest.raises(Crash):
        fit(logger, [CrashAt(3)], max_steps=10)
    [folder] = all_run_folders(tmp_path)
    found = records(folder)
    assert of_type(found, "exit")[-1]["exit_code"] == 1
    assert [row["trainer/global_step"] for row in rows(found)] == [0, 1, 2]


def test_a_run_the_user_started_is_used_and_left_open(tmp_path):
    run = wandb.init(project="mine", dir=tmp_path)
    logger = WandbLogger(save_dir=tmp_path)
    fit(logger, max_steps=2)
    assert logger.experiment is run and wandb.run is run and logger.version == run.id
    run.finish()


KILLED_JOB = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    import ember
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.loggers import WandbLogger
    from logger_helpers import fit

    def children():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid():
                found.append(int(entry))
        return found

    class KillAll(ember.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 6:
                for pid in children():  # wandb-core too: what it still buffers is lost
                    os.kill(pid, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    fit(WandbLogger(save_dir=sys.argv[1]),
        [ModelCheckpoint(dirpath=os.path.join(sys.argv[1], "ckpt"), every_n_train_steps=4), KillAll()],
        max_steps=10)
""")


def test_a_killed_run_keeps_the_rows_logged_before_its_last_checkpoint(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # its own wandb-core, a child
    env["PYTHONPATH"] = str(TESTS.parent)
    done = subprocess.run([sys.executable, "-c", KILLED_JOB, str(tmp_path), str(TESTS)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    assert os.listdir(tmp_path / "ckpt") == ["epoch=0-step=4.ckpt"]
    [folder] = all_run_folders(tmp_path)
    steps = [row["trainer/global_step"] for row in rows(records(folder))]
    # steps 0-3 were logged before the checkpoint of step 4; 4 and 5 may have been written too
    assert steps[:4] == [0, 1, 2, 3] and steps == list(range(len(steps))) and len(steps) <= 6


def test_resume_continues_the_run_id(tmp_path):
    first = WandbLogger(save_dir=tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    fit(first, [checkpoint], max_steps=4)  # stops at the checkpoint of step 4
    wandb.finish()  # as when the first process exits

    second = WandbLogger(save_dir=tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    with pytest.warns(UserWarning, match="W&B cannot delete logged rows"):
        fit(second, [checkpoint], max_steps=10, ckpt_path=tmp_path / "ckpt" / "last.ckpt")

    assert second.version == first.version
    folders = run_folders(tmp_path, first.version)
    assert len(folders) == 2 and len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    assert [of_type(records(f), "run")[0]["run_id"] for f in folders] == [first.version] * 2
    steps = [row["trainer/global_step"] for f in folders for row in rows(records(f)) if "train_loss" in row]
    assert steps == list(range(10))


def test_tables_images_and_the_best_checkpoint(tmp_path):
    logger = WandbLogger(save_dir=tmp_path, log_model=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2)
    fit(logger, [checkpoint], val=True, max_epochs=3)
    [artifact] = of_type(records(run_folders(tmp_path, logger.version)[0]), "artifact")
    assert (artifact["name"], artifact["type"]) == (f"model-{logger.version}", "model")
    assert sorted(artifact["aliases"]) == ["best", "latest"]
    assert json.loads(artifact["metadata"])["file"] == checkpoint.best_model_path.split("/")[-1]

    # after fit, the logger goes on in the same run
    logger.log_table("samples", columns=["text", "label"], data=[["hi", 1], ["bye", 0]], step=24)
    logger.log_image("inputs", [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], caption=["zeros", "ones"], step=24)
    with pytest.raises(ValueError, match="caption has 1 entries for 2 images"):
        logger.log_image("inputs", [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], caption=["zeros"])
    logger.finalize("success")
    [folder] = all_run_folders(tmp_path)
    table, image = rows(records(folder))[-2:]
    assert (table["samples._type"], table["trainer/global_step"]) == ("table-file", 24)
    assert (image["inputs._type"], image["inputs.captions"], image["inputs.count"]) == ("images/separated",
                                                                                       ["zeros", "ones"], 2)
