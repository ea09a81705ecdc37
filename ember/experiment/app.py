"""`ember fit | validate | test | predict | tune`: Hydra apps over ember's packaged config groups.

The task below is what one run (or one trial of a sweep) does, read top to bottom: check the config,
skip a finished sweep trial, pick the checkpoint to resume, build the objects, run the stage, write
run.json. The Trainer never sees the config.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ember.experiment import runs
from ember.experiment.instantiate import ConfigError, build, check_config, config_package

log = logging.getLogger("ember.experiment")
STAGES = ("fit", "validate", "test", "predict", "tune")
CONFIG_MODULE = "ember.experiment.configs"
CONFIG_NAME = "ember"
DEFAULT_CONFIG_DIRS = ("configs", "recipes/configs")  # looked for beside the command, in this order

if not OmegaConf.has_resolver("ember_short_id"):
    # cached: the run folder's name is resolved once and copied into every job of a sweep
    OmegaConf.register_new_resolver("ember_short_id", runs.short_id, use_cache=True)


def user_config_dirs() -> list[str]:
    """The folders given with -cd/--config-dir (Hydra's command-line config source)."""
    from hydra.core.hydra_config import HydraConfig

    sources = HydraConfig.get().runtime.config_sources
    return [s.path for s in sources if s.provider == "command-line" and s.schema == "file"]


def importable(config_dirs: list[str]) -> list[str]:
    """Put the folder above each config folder's package on sys.path; return the packages allowed by it."""
    packages = []
    for config_dir in config_dirs:
        package = config_package(config_dir)
        root = Path(config_dir).resolve().parent
        if package is not None:
            packages.append(package)
            while (root / "__init__.py").exists():
                root = root.parent
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    return packages


def objective(trainer: Any, monitor: str | None) -> float | None:
    """The monitored metric of the best checkpoint, else its last logged value."""
    checkpoint = getattr(trainer, "checkpoint_callback", None)
    score = getattr(checkpoint, "best_model_score", None) if checkpoint is not None else None
    if score is None and monitor:
        score = trainer.callback_metrics.get(monitor)
    return None if score is None else float(score)


def parallel_launcher(hydra_cfg: Any) -> bool:
    """A launcher running several jobs at once on this machine (joblib with n_jobs other than 1)."""
    launcher = hydra_cfg.get("launcher") or {}
    return "joblib" in str(launcher.get("_target_", "")).lower() and launcher.get("n_jobs", -1) != 1


def set_threads(threads: int | None, parallel: bool) -> int | None:
    """`threads:` (null: 1 under a parallel launcher, torch's default otherwise) for torch and the job's children
    (OMP_NUM_THREADS), before anything is built. Returns the number set (None: left alone)."""
    if threads is None and parallel:
        threads = 1  # n jobs each using every core fight over them
    if threads is None:
        return None
    import torch

    torch.set_num_threads(int(threads))
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    return int(threads)


def run_task(stage: str, cfg: DictConfig) -> float | None:
    """One run: returns the objective (None when a sweep trial failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    allowed = importable(user_config_dirs())
    plain = OmegaConf.to_container(cfg, resolve=True)
    try:
        check_config(plain, allowed)
    except ConfigError as err:
        if not in_sweep:
            # nothing ran: leave no half-made run folder behind
            runs.remove_run_folder(output_dir, hydra_cfg.runtime.cwd)
        print(f"ember {stage}: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    record = runs.RunRecord(output_dir, write=os.environ.get("RANK", "0") == "0")  # DDP: rank 0 writes
    if in_sweep and record.status in ("done", "pruned"):
        log.info(f"trial {hydra_cfg.job.num} is done already ({output_dir}); skipped")
        return record.metric
    ckpt_path = plain.get("ckpt_path")
    cfg_hash = runs.config_hash(OmegaConf.to_container(cfg, resolve=False))  # run folders differ, not the config
    last = output_dir / "checkpoints" / "last.ckpt"
    if in_sweep and last.exists() and stage == "fit":
        ckpt_path = str(last)  # an interrupted trial resumes where it stopped
        log.info(f"trial {hydra_cfg.job.num} resumes from {last}")
    elif ckpt_path == "auto":
        found = runs.newest_resumable(output_dir.parent.parent, cfg_hash, exclude=output_dir)
        ckpt_path = str(found) if found is not None else None
        log.info(f"ckpt_path=auto: {'resuming from ' + ckpt_path if ckpt_path else 'no earlier run of this config'}")
    record.start(stage, cfg_hash, list(hydra_cfg.overrides.task), ckpt_path)
    try:
        set_threads(plain.get("threads"), in_sweep and parallel_launcher(hydra_cfg))
        pruning = None
        if in_sweep and stage == "fit":
            from ember.experiment.pruning import pruning_callback

            pruning = pruning_callback(hydra_cfg.sweep.dir, hydra_cfg.job.num, plain.get("monitor"))
        trainer, module, datamodule = build(cfg, output_dir, allowed, [pruning] if pruning is not None else [])
        if stage == "fit":
            record.count_fit()
        if stage == "tune":
            record.data["tuned"] = result = tune(trainer, module, datamodule, plain.get("tune") or {})
            metric = result.get("lr", result.get("batch_size"))
        else:
            result = getattr(trainer, stage)(module, datamodule=datamodule, ckpt_path=ckpt_path)
            metric = objective(trainer, plain.get("monitor")) if stage == "fit" else _first_metric(result, plain)
        if stage == "predict":
            _save_predictions(result, output_dir)
        if stage == "fit" and plain.get("test_after_fit"):
            record.data["test_metrics"] = _test_best(trainer, module, datamodule)
    except Exception as err:
        record.fail(err)
        if not in_sweep:
            raise
        log.error(f"trial {hydra_cfg.job.num} failed: {type(err).__name__}: {err} "
                  f"(traceback in {output_dir / runs.TRACEBACK_FILE})")
        return None
    import torch

    record.data["threads"] = torch.get_num_threads()
    record.finish(metric, "tuned" if stage == "tune" else plain.get("monitor"))
    if pruning is not None and pruning.pruned_at is not None:
        record.data.update(status="pruned", pruned_at_epoch=pruning.pruned_at)  # stopped early: not a failure
        record.save()
    log.info(f"{stage} done: {record.data['monitor']}={record.data.get('tuned', metric)} ({output_dir})")
    return metric


def _first_metric(result: Any, plain: dict[str, Any]) -> float | None:
    """validate/test: the monitored key of the first dataloader's results, else its first value."""
    if not result or not isinstance(result, list) or not isinstance(result[0], dict) or not result[0]:
        return None
    values = result[0]
    monitor = plain.get("monitor")
    for key in (monitor, str(monitor).replace("val_", "test_")):
        if key in values:
            return float(values[key])
    return float(next(iter(values.values())))


def tune(trainer: Any, module: Any, datamodule: Any, steps: dict[str, Any]) -> dict[str, Any]:
    """`ember tune`: the Tuner's batch-size search, then its learning-rate search, each run when its key
    under `tune:` is a dict of arguments (null: skipped). Returns {"batch_size": ..., "lr": ...}."""
    from ember.tuner import Tuner

    tuner, found = Tuner(trainer), {}
    if steps.get("scale_batch_size") is not None:
        found["batch_size"] = tuner.scale_batch_size(module, datamodule=datamodule, **steps["scale_batch_size"])
    if steps.get("lr_find") is not None:
        found["lr"] = tuner.lr_find(module, datamodule=datamodule, **steps["lr_find"]).suggestion()
    return found


def _test_best(trainer: Any, module: Any, datamodule: Any) -> dict[str, float]:
    """`test_after_fit: true`: test the best checkpoint (the fitted weights when none was kept)."""
    checkpoint = getattr(trainer, "checkpoint_callback", None)
    best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    results = trainer.test(module, datamodule=datamodule, ckpt_path="best" if best else None, verbose=False)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    log.info("test of %s: %s", best or "the fitted weights", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _save_predictions(predictions: Any, output_dir: Path) -> None:
    import torch

    torch.save(predictions, output_dir / "predictions.pt")


def hydra_app(stage: str):
    """The Hydra main of one stage."""
    import hydra

    task = functools.partial(run_task, stage)
    functools.update_wrapper(task, run_task)
    return hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)(task)


def main(stage: str, argv: list[str]) -> int:
    """`ember <stage> ARGS`: returns the exit code (1 when trials of a sweep failed)."""
    from ember.experiment import sweeps

    command = " ".join(["ember", stage, *argv])
    if not any(a in ("-cd", "--config-dir") or a.startswith("--config-dir=") for a in argv):
        # a configs/ folder beside the command is the user's config folder; in ember's repository (no
        # configs/ at its root) the recipes' configs are: `ember fit experiment=mnist`
        found = next((Path(d) for d in DEFAULT_CONFIG_DIRS if Path(d).is_dir()), None)
        if found is not None:
            argv = ["--config-dir", str(found.resolve()), *argv]
    config_dirs = [a.split("=", 1)[1] if a.startswith("--config-dir=") else a for i, a in enumerate(argv)
                   if a.startswith("--config-dir=") or (i and argv[i - 1] in ("-cd", "--config-dir"))]
    entry = [sys.executable, "-m", "ember", stage, *(["--config-dir", str(Path(config_dirs[-1]).resolve())]
                                                     if config_dirs else [])]
    settings = {
        "EMBER_COMMAND": command,  # for run.json, also in launcher workers
        "EMBER_JOB_NAME": f"ember_{stage}",  # hydra.job.name: the log file ember_<stage>.log
        "EMBER_HYDRA_ENTRY": json.dumps(entry),  # how a DDP strategy starts the other ranks of a job
    }
    saved_argv, saved_env = sys.argv, {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    sys.argv = [f"ember {stage}", *argv]
    sweeps.LAST_SUMMARY.clear()
    try:
        hydra_app(stage)()
    finally:  # put back what this process had: a caller running other Hydra apps must not inherit ours
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    failed = sweeps.LAST_SUMMARY.get("failed", 0)
    if failed:
        total = sweeps.LAST_SUMMARY.get("total", 0)
        print(f"ember {stage}: {failed} of {total} trials failed; their tracebacks are in their folders "
              f"({sweeps.LAST_SUMMARY.get('dir')})", file=sys.stderr)
        return 1
    return 0
