"""WandbLogger offline, read back from the run's `.wandb` record file with wandb's own reader
(`wandb leet inspect --json`, run through the wandb-core binary that wandb ships)."""

import csv
import json
import subprocess

import pytest
import torch

from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.loggers import CSVLogger, WandbLogger

from logger_helpers import fit

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
    assert of_type(found, "exit")[-1]["exit_code"] == 0
    with open(csv_logger.metrics_file_path) as f:
        expected = [{("trainer/global_step" if k == "step" else k): (int(v) if k in ("step", "epoch") else float(v))
                     for k, v in row.items() if v} for row in csv.DictReader(f)]
    assert rows(found) == expected
    assert logger.log_dir == str(tmp_path / "proj" / logger.version)


def test_resume_continues_the_run_id(tmp_path):
    first = WandbLogger(save_dir=tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    fit(first, [checkpoint], max_steps=4)  # stops at the checkpoint of step 4

    second = WandbLogger(save_dir=tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
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

    # after fit, the logger continues the same run id
    logger.log_table("samples", columns=["text", "label"], data=[["hi", 1], ["bye", 0]], step=24)
    logger.log_image("inputs", [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], caption=["zeros", "ones"], step=24)
    with pytest.raises(ValueError, match="caption has 1 entries for 2 images"):
        logger.log_image("inputs", [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], caption=["zeros"])
    logger.finalize("success")
    table, image = rows(records(run_folders(tmp_path, logger.version)[1]))
    assert (table["samples._type"], table["trainer/global_step"]) == ("table-file", 24)
    assert (image["inputs._type"], image["inputs.captions"], image["inputs.count"]) == ("images/separated",
                                                                                       ["zeros", "ones"], 2)
