"""MLFlowLogger, read back with MlflowClient from the SQLite store it wrote."""

import csv
import shutil
from pathlib import Path

import pytest

from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.loggers import CSVLogger, MLFlowLogger

from logger_helpers import Crash, CrashAt, fit

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """An empty SQLite store made by MLflow once: creating one runs its schema migrations (~10 s here)."""
    path = tmp_path_factory.getbasetemp() / "mlflow-empty-store" / "mlflow.db"
    if not path.exists():
        path.parent.mkdir()
        mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def save_dir(tmp_path, empty_store, monkeypatch):
    """A save_dir whose default store (`mlruns/mlflow.db`) starts as a copy of the empty store; also the
    working directory, where MLflow's global default store would appear if anything used it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    (tmp_path / "mlruns").mkdir()
    shutil.copy(empty_store, tmp_path / "mlruns" / "mlflow.db")
    return tmp_path


def client_for(save_dir):
    return mlflow.MlflowClient(f"sqlite:///{save_dir / 'mlruns' / 'mlflow.db'}")


def history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_metrics_params_and_tags_read_back_as_logged(save_dir):
    csv_logger = CSVLogger(save_dir, name="csv")
    logger = MLFlowLogger("exp", run_name="first", tags={"team": "vision"}, save_dir=save_dir)
    fit([csv_logger, logger], val=True, max_epochs=2, default_root_dir=save_dir)

    client = client_for(save_dir)
    run = client.get_run(logger.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "exp"
    assert run.info.run_name == "first"
    assert run.info.status == "FINISHED"
    assert run.data.tags["team"] == "vision"
    assert run.data.params == {"lr": "0.1", "sizes/hidden": "2"}
    with open(csv_logger.metrics_file_path) as f:
        rows = list(csv.DictReader(f))
    assert set(run.data.metrics) == {"train_loss", "val_loss", "epoch"}
    for key in run.data.metrics:
        assert history(client, run.info.run_id, key) == [(int(r["step"]), float(r[key])) for r in rows if r[key]]
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [7, 15]
    assert logger.log_dir == str(save_dir / "mlruns" / run.info.experiment_id / run.info.run_id)


def test_resume_continues_the_run_without_duplicate_steps(save_dir):
    reference = MLFlowLogger("reference", save_dir=save_dir)
    fit(reference, max_steps=10, enable_checkpointing=False)

    first = MLFlowLogger("exp", save_dir=save_dir)
    checkpoint = ModelCheckpoint(dirpath=save_dir / "ckpt", every_n_train_steps=4, save_last=True)
    with pytest.raises(Crash):
        fit(first, [checkpoint, CrashAt(6)], max_steps=10)  # steps 0-5 logged, last.ckpt at step 4
    client = client_for(save_dir)
    assert client.get_run(first.run_id).info.status == "FAILED"

    second = MLFlowLogger("exp", save_dir=save_dir)
    checkpoint = ModelCheckpoint(dirpath=save_dir / "ckpt", every_n_train_steps=4, save_last=True)
    fit(second, [checkpoint], max_steps=10, ckpt_path=save_dir / "ckpt" / "last.ckpt")

    assert second.run_id == first.run_id
    assert len(client.search_runs([first.experiment_id])) == 1
    assert client.get_run(first.run_id).info.status == "FINISHED"
    resumed = history(client, first.run_id, "train_loss")
    assert [step for step, _ in resumed] == list(range(10))
    assert resumed == history(client, reference.run_id, "train_loss")


def test_log_model_true_logs_the_best_checkpoint(save_dir):
    logger = MLFlowLogger(save_dir=save_dir, log_model=True)
    checkpoint = ModelCheckpoint(dirpath=save_dir / "ckpt", monitor="val_loss", save_top_k=2, save_last=True)
    fit(logger, [checkpoint], val=True, max_epochs=3)
    artifacts = client_for(save_dir).list_artifacts(logger.run_id, "checkpoints")
    best = Path(checkpoint.best_model_path)
    assert [(a.path, a.file_size) for a in artifacts] == [(f"checkpoints/{best.name}", best.stat().st_size)]


def test_log_model_all_logs_every_checkpoint(save_dir):
    logger = MLFlowLogger(save_dir=save_dir, log_model="all")
    checkpoint = ModelCheckpoint(dirpath=save_dir / "ckpt", save_top_k=-1, save_last=True)
    fit(logger, [checkpoint], max_epochs=3)
    artifacts = client_for(save_dir).list_artifacts(logger.run_id, "checkpoints")
    assert sorted(a.path.split("/")[-1] for a in artifacts) == \
        ["epoch=0-step=8.ckpt", "epoch=1-step=16.ckpt", "epoch=2-step=24.ckpt", "last.ckpt"]


def test_names_mlflow_rejects_are_renamed_with_a_warning(save_dir):
    logger = MLFlowLogger(save_dir=save_dir, prefix="train")
    with pytest.warns(UserWarning, match="'train-acc@1' as 'train-acc_1'"):
        logger.log_metrics({"acc@1": 0.5}, step=2)
    logger.finalize("success")
    assert history(client_for(save_dir), logger.run_id, "train-acc_1") == [(2, 0.5)]


def test_queued_writes_are_flushed_at_finalize(save_dir):
    logger = MLFlowLogger(save_dir=save_dir, synchronous=False)
    for step in range(5):
        logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    logger.finalize("success")
    assert history(client_for(save_dir), logger.run_id, "loss") == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert [p.name for p in save_dir.iterdir()] == ["mlruns"]  # no default ./mlflow.db made on the side


def test_a_run_id_missing_from_the_store_is_a_clear_error(save_dir):
    with pytest.raises(ValueError, match="run 'nope' is not in the tracking store"):
        MLFlowLogger(save_dir=save_dir, run_id="nope").experiment
