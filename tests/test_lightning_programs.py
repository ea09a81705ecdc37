"""Programs shaped like Lightning users' (tests/lightning_programs.py), each run from the same source under
Lightning 2.6 and under `ember.lightning`: the same optimizer steps, logged keys, metrics.csv rows, checkpoint
names and, where seeded, the same weights (torch.equal) and the same random numbers after fit."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import ember.lightning
from ember.checkpoint import CheckpointError
import lightning_programs as programs

L = pytest.importorskip("lightning.pytorch")
HERE = Path(__file__).resolve().parent


def both(tmp_path, program):
    """Run `program(pl, root)` (returning a `programs.run` result) under each library from seed 0."""
    results = {}
    for pl in (L, ember.lightning):
        name = pl.__name__
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pl.seed_everything(0, verbose=False)
        results[name] = program(pl, tmp_path / name)
    return results[ember.lightning.__name__], results[L.__name__]


def test_gan_with_two_optimizers_and_toggle_optimizer(tmp_path):
    pytest.importorskip("tensorboard")

    def program(pl, root):
        loggers = [pl.loggers.TensorBoardLogger(root, name="tb"), pl.loggers.CSVLogger(root, name="csv")]
        return programs.run(pl, programs.gan(pl)(), root, max_epochs=2, limit_val_batches=2,
                            logger=loggers, fit=lambda t, m: t.fit(m, programs.data(), programs.data(16, seed=1)))

    ours, theirs = both(tmp_path, program)
    assert programs.comparable(ours) == programs.comparable(theirs)
    assert ours.global_step == 16 and ours.optimizer_steps == 16  # two optimizers, 4 batches, 2 epochs
    assert all(ours.model.optimizer_types) and all(theirs.model.optimizer_types)
    assert programs.same_weights(ours.model, theirs.model)


@pytest.mark.parametrize("finetuning", ["BackboneFinetuning", "BaseFinetuning subclass"])
def test_transfer_learning_freezes_then_unfreezes_the_backbone(tmp_path, finetuning):
    def program(pl, root):
        if finetuning == "BackboneFinetuning":
            finetune = pl.callbacks.BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.1,
                                                       should_align=True, train_bn=True)
        else:
            finetune = programs.freeze_unfreeze(pl, at_epoch=1)
        callbacks = [finetune, pl.callbacks.LearningRateMonitor(logging_interval="epoch")]
        result = programs.run(pl, programs.transfer(pl)(), root, max_epochs=3, callbacks=callbacks,
                              log_every_n_steps=1,
                              fit=lambda t, m: t.fit(m, programs.data(), programs.data(16, seed=1)))
        result.groups = [len(g["params"]) for g in result.trainer.optimizers[0].param_groups]
        result.lrs = [g["lr"] for g in result.trainer.optimizers[0].param_groups]
        return result

    ours, theirs = both(tmp_path, program)
    assert programs.comparable(ours) == programs.comparable(theirs)
    assert sorted(ours.groups) == [2, 4] and ours.groups == theirs.groups  # head; backbone (linear + norm)
    assert programs.same_weights(ours.model, theirs.model)
    assert all(p.requires_grad for p in ours.model.backbone.parameters())


@pytest.mark.parametrize("accumulate", [1, 2])
def test_warm_up_by_overriding_optimizer_step(tmp_path, accumulate):
    def program(pl, root):
        return programs.run(pl, programs.warmup(pl)(), root, max_epochs=2, log_every_n_steps=1,
                            accumulate_grad_batches=accumulate)

    ours, theirs = both(tmp_path, program)
    assert programs.comparable(ours) == programs.comparable(theirs)
    assert ours.global_step == 8 // accumulate
    assert programs.same_weights(ours.model, theirs.model)
    lrs = [row["lr"] for row in programs.csv_rows(tmp_path / ember.lightning.__name__) if row.get("lr")]
    assert lrs == [row["lr"] for row in programs.csv_rows(tmp_path / L.__name__) if row.get("lr")]
    assert float(lrs[0]) == pytest.approx(0.1 / 4)  # warm-up: a quarter of the rate on the first step


@pytest.mark.parametrize("ignore", [(), ("net",)])
def test_module_taking_a_network_and_a_partial_optimizer(tmp_path, ignore):
    def program(pl, root):
        cls = programs.template(pl, ignore)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = cls(**programs.template_arguments())
        if pl is ember.lightning:  # what the checkpoint will not hold, named once
            assert [str(w.message).count("left out") for w in caught] == [1]
        result = programs.run(pl, model, root, max_epochs=3,
                              fit=lambda t, m: (t.fit(m, programs.data(), programs.data(16, seed=1)),
                                                t.test(m, programs.data(16, seed=2))))
        result.hparams = sorted(result.model.hparams)
        (path,) = Path(root).rglob("*.ckpt")
        if pl is ember.lightning:  # nothing pickled: the error names what to pass
            with pytest.raises(CheckpointError, match=r"load_from_checkpoint\(path, (net=\.\.\., )?optimizer="):
                cls.load_from_checkpoint(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Lightning: weights_only is needed for its pickled partials)
            loaded = cls.load_from_checkpoint(path, weights_only=False, **programs.template_arguments())
        result.loaded_same = programs.same_weights(loaded, result.model)
        result.yaml = {name: yaml.safe_load((Path(root) / name).read_text())
                       for name in programs.files_under(root, ".yaml")}
        return result

    ours, theirs = both(tmp_path, program)
    assert programs.comparable(ours) == programs.comparable(theirs)
    assert ours.loaded_same and ours.hparams == sorted({"net", "optimizer", "scheduler", "compile"} - set(ignore))
    assert "test/loss" in ours.logged
    assert programs.same_weights(ours.model, theirs.model)


def test_hydra_instantiated_trainer_with_callbacks_and_loggers(tmp_path):
    hydra_utils = pytest.importorskip("hydra.utils")
    from omegaconf import OmegaConf

    def program(pl, root):
        library = pl.__name__
        config = OmegaConf.create({
            "net": {"_target_": "lightning_programs.small_net"},
            "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
            "trainer": {
                "_target_": f"{library}.Trainer", "default_root_dir": str(root), "max_epochs": 3,
                "accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 2,
                "callbacks": [
                    {"_target_": f"{library}.callbacks.ModelCheckpoint", "monitor": "val/loss", "save_top_k": 2,
                     "save_last": True, "filename": "epoch_{epoch:03d}", "auto_insert_metric_name": False},
                    {"_target_": f"{library}.callbacks.EarlyStopping", "monitor": "val/loss", "patience": 5},
                    {"_target_": f"{library}.callbacks.LearningRateMonitor", "logging_interval": "step"},
                    {"_target_": f"{library}.callbacks.RichModelSummary", "max_depth": -1},
                ],
                "logger": [{"_target_": f"{library}.loggers.CSVLogger", "save_dir": str(root), "name": "csv"}],
            }})
        trainer = hydra_utils.instantiate(config.trainer)
        assert type(trainer.callbacks).__name__ == "list"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the note on what checkpoints leave out: tested above)
            module = programs.template(pl)(net=hydra_utils.instantiate(config.net),
                                           optimizer=hydra_utils.instantiate(config.optimizer))
        with warnings.catch_warnings():
            if pl is L:
                warnings.simplefilter("ignore")  # Lightning's notes; ember's warnings stay
            trainer.fit(module, programs.data(), programs.data(16, seed=1))
        return dict(steps=trainer.global_step, logged=sorted(trainer.logged_metrics),
                    columns=programs.csv_columns(root), rows=programs.csv_steps(root),
                    checkpoints=programs.files_under(root, ".ckpt"),
                    best=Path(trainer.checkpoint_callback.best_model_path).name, model=module)

    ours, theirs = both(tmp_path, program)
    assert ours.pop("model") is not None and theirs.pop("model") is not None
    assert ours == theirs
    assert "lr-Adam" in ours["columns"]["csv/version_0"] and ours["checkpoints"][-1].endswith("last.ckpt")


@pytest.mark.slow
def test_lightning_cli_script_with_a_yaml_config(tmp_path):
    pytest.importorskip("jsonargparse")
    pytest.importorskip("tensorboard")  # Lightning's default logger
    config = tmp_path / "config.yaml"
    config.write_text("seed_everything: 3\n"
                      "trainer:\n  max_epochs: 2\n  accelerator: cpu\n  enable_progress_bar: false\n"
                      "  log_every_n_steps: 2\n"
                      "model:\n  hidden: 6\n"
                      "optimizer:\n  class_path: torch.optim.Adam\n  init_args: {lr: 0.01}\n"
                      "data:\n  batch_size: 4\n")
    found = {}
    for library in (L.__name__, ember.lightning.__name__):
        root = tmp_path / library
        root.mkdir()
        env = {**os.environ, "PL": library, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]),
               "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

        def cli(*args):
            done = subprocess.run([sys.executable, str(HERE / "lightning_programs.py"), *args], cwd=root,
                                  env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        cli("fit", "--config", str(config))
        (checkpoint,) = root.rglob("*.ckpt")
        tested = cli("test", "--config", str(config), "--ckpt_path", str(checkpoint))
        saved = yaml.safe_load((root / "lightning_logs/version_0/config.yaml").read_text())
        found[library] = dict(checkpoints=programs.files_under(root, ".ckpt"),
                              yaml=programs.files_under(root, ".yaml"),
                              events=sorted(str(p.parent.relative_to(root)) for p in root.rglob("events.out.*")),
                              tested="test_loss" in tested, seed=saved["seed_everything"],
                              model=saved["model"], data=saved["data"], optimizer=saved["optimizer"])
    assert found[ember.lightning.__name__] == found[L.__name__]
    assert found[L.__name__]["checkpoints"] == ["lightning_logs/version_0/checkpoints/epoch=1-step=16.ckpt"]
    assert found[L.__name__]["tested"]

def seeded_fit(pl, root, validation: bool, shuffle: bool = False, seed_everything: bool = True):
    """seed_everything (or torch.manual_seed alone), build a model with dropout, fit; then what the run
    leaves: weights, metrics, the CSV rows and the next random numbers of torch, numpy and random."""
    import random

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if seed_everything:
            pl.seed_everything(1234, verbose=False)
        else:
            torch.manual_seed(1234)
            np.random.seed(1234)
            random.seed(1234)
    model = programs.dropout_net(pl)()
    trainer = pl.Trainer(default_root_dir=root, max_epochs=3, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False, logger=pl.loggers.CSVLogger(root), log_every_n_steps=2)
    val = programs.data(16, seed=1) if validation else None
    with warnings.catch_warnings():
        if pl is L:
            warnings.simplefilter("ignore")  # Lightning's notes; ember's warnings stay
        trainer.fit(model, programs.data(shuffle=shuffle), val)
    return dict(weights=model.state_dict(), metrics=dict(trainer.callback_metrics),
                rows=programs.csv_rows(root), draws=(torch.rand(3), np.random.rand(2).tolist(), random.random()),
                checkpoints=programs.files_under(root, ".ckpt"))


@pytest.mark.parametrize("validation, seed_everything", [(False, True), (True, True), (True, False)],
                         ids=["no validation", "validation", "torch.manual_seed alone"])
def test_same_seed_same_numbers(tmp_path, validation, seed_everything):
    # (without seed_everything ember has no data seed and draws none: nothing is shuffled)
    ours = seeded_fit(ember.lightning, tmp_path / "ember", validation, seed_everything=seed_everything)
    theirs = seeded_fit(L, tmp_path / "lightning", validation, seed_everything=seed_everything)
    assert programs.same_weights(ours["weights"], theirs["weights"])
    assert ours["metrics"].keys() == theirs["metrics"].keys()
    assert all(torch.equal(ours["metrics"][k], theirs["metrics"][k]) for k in ours["metrics"])
    assert ours["rows"] == theirs["rows"]  # every value written, as text: bit for bit
    assert torch.equal(ours["draws"][0], theirs["draws"][0]) and ours["draws"][1:] == theirs["draws"][1:]
    assert ours["checkpoints"] == theirs["checkpoints"]


def test_with_shuffling_the_order_is_embers_own_but_the_random_numbers_after_fit_are_the_same(tmp_path):
    # docs/lightning-compat.md (Trainer `fit`): ember shuffles by (seed, epoch), so that a resumed run sees
    # the same order; it draws from the global generator what a shuffling DataLoader would
    ours = seeded_fit(ember.lightning, tmp_path / "ember", validation=True, shuffle=True)
    theirs = seeded_fit(L, tmp_path / "lightning", validation=True, shuffle=True)
    assert torch.equal(ours["draws"][0], theirs["draws"][0]) and ours["draws"][1:] == theirs["draws"][1:]
    assert ours["metrics"].keys() == theirs["metrics"].keys()

