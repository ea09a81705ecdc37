"""The training job of the kill-point matrix (tests/test_killpoints.py): run uninterrupted, killed at a
chosen moment, and resumed.

    python tests/killpoint_job.py ROOT --config JSON [--kill SPEC] [--signal KILL|TERM] [--resume]
    python tests/killpoint_job.py --serve        # a fork server for the tests (see `serve`)

The job trains a tiny seeded model (dropout, so the RNG matters; Adam) on a small shuffled dataset for
EPOCHS epochs, with the options in `DEFAULTS` (the config JSON overrides them). At the end it writes
`ROOT/weights.pt` (the state dict) and `ROOT/result.json` (global_step, current_epoch, callback_metrics,
where the logger wrote, the checkpoint it resumed from, the warnings fit raised, how often each kill point
occurred). `--resume` fits with ckpt_path="last" (or, with resume_from="newest", the path of the newest
`*.ckpt` under ROOT).

Kill points (`--kill POINT#N[@before]`): the process sends itself the signal at the N-th occurrence of
POINT, counted from the start of this process and never during the sanity check:

- a hook name (`on_train_batch_end`, `on_before_optimizer_step`, `on_validation_end`,
  `on_validation_batch_end`, `on_train_epoch_end`, `on_train_end`, ...): right after every callback ran
  that hook, the checkpoint callback included (so a checkpoint written in that hook is on disk); with
  `@before`, before any callback ran it (so that checkpoint is not written);
- `mid_accumulation`: right after a backward that does not end an accumulation window (gradients of
  the window are pending);
- `checkpoint_file`: right after a checkpoint file other than `last.ckpt` was written (a top-k or
  latest file), before `last.ckpt` is updated;
- `checkpoint_write`: in the middle of writing a checkpoint: half of its bytes are written and synced;
- `early_stop`: right after EarlyStopping asked the fit to stop (and the checkpoint of that moment was
  written).

Before it sends the signal the job writes `ROOT/killed.json` (where it was), so the test knows the kill
point was reached.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import json
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

import ember  # noqa: E402
from ember.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from ember import loggers  # noqa: E402

EPOCHS = 3
TRAIN_SAMPLES, VAL_SAMPLES, BATCH_SIZE = 60, 24, 6  # 10 training batches an epoch, 4 validation batches
SEED = 1234

# Each option and the values the job knows.
OPTIONS: dict[str, tuple] = {
    "accumulate": (1, 3),
    "val_check_interval": (1.0, 0.5, 0.25, 3),  # a float: a fraction of the epoch; an int: every N batches
    "scheduler": ("none", "step", "plateau_step", "plateau_epoch"),
    "manual": (False, True),
    "precision": ("32-true", "bf16-mixed"),
    "val_loaders": (1, 2),
    "num_workers": (0, 2),
    "augment": (False, True),  # the training dataset's __getitem__ draws torch.rand
    "logger": ("csv", "tensorboard", "mlflow", "wandb"),
    "early_stopping": (0, 1, 2),  # 0: none; N: EarlyStopping(patience=N) that stops mid-run (see below)
    "checkpoint": ("last", "topk", 3),  # "last": the default style; an int k (any): every_n_train_steps=k
    "resume_from": ("last", "newest"),
}
DEFAULTS: dict[str, Any] = {name: values[0] for name, values in OPTIONS.items()}

POINTS_AFTER_CALLBACKS = (
    "on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_train_batch_end", "on_validation_start",
    "on_validation_batch_end", "on_validation_end", "on_train_epoch_end", "on_train_end",
)
SPECIAL_POINTS = ("mid_accumulation", "checkpoint_file", "checkpoint_write", "early_stop")


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` over the defaults, each value checked against OPTIONS."""
    unknown = set(config) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    full = {**DEFAULTS, **config}
    for name, value in full.items():
        if name == "checkpoint" and type(value) is int and value >= 1:
            continue
        if value not in OPTIONS[name] or type(value) is not type(next(v for v in OPTIONS[name] if v == value)):
            raise ValueError(f"{name}={value!r}; expected one of {OPTIONS[name]}")
    if full["manual"] and full["scheduler"].startswith("plateau"):
        raise ValueError("manual optimization steps its scheduler itself: scheduler 'none' or 'step' only")
    return full


def monitored(config: dict[str, Any]) -> str:
    """The validation key that EarlyStopping, top-k and the epoch plateau scheduler watch."""
    return "val_loss/dataloader_idx_0" if config["val_loaders"] == 2 else "val_loss"


# --- data and model ----------------------------------------------------------------------------------


def regression_data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.arange(1.0, 5.0) + 0.1 * torch.randn(n, generator=generator)
    return TensorDataset(x, y.unsqueeze(1))


class Jittered(Dataset):
    """Adds noise drawn with torch.rand in __getitem__: in the main process (num_workers=0) or a worker."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index]
        return x + 0.1 * torch.rand(x.shape), y


class KillpointModel(ember.Module):
    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = config
        self.automatic_optimization = not config["manual"]
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.restored_from: dict[str, Any] | None = None

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        if self.automatic_optimization:
            return loss
        # manual optimization, accumulating over `accumulate` batches as the Trainer would
        accumulate = self.config["accumulate"]
        self.manual_backward(loss / accumulate)
        if window_ends(batch_idx, accumulate, self.trainer.num_training_batches):
            optimizer = self.optimizers()
            optimizer.step()
            optimizer.zero_grad()
            if self.config["scheduler"] == "step":
                self.lr_schedulers().step()
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        kind = self.config["scheduler"]
        if kind == "none":
            return optimizer
        if kind == "step":
            scheduler = {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.7),
                         "interval": "step"}
        elif kind == "plateau_step":
            # steps after every optimizer step on the previous epoch's mean training loss, which is in
            # callback_metrics from the first epoch end on (strict=False: no step before that)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
            scheduler = {"scheduler": plateau, "interval": "step", "monitor": "train_loss_epoch", "strict": False}
        else:
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
            scheduler = {"scheduler": plateau, "interval": "epoch", "monitor": monitored(self.config)}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_load_checkpoint(self, checkpoint):
        loops = checkpoint.get("loops", {})
        self.restored_from = {"global_step": checkpoint.get("global_step"), "epoch": checkpoint.get("epoch"),
                              "batches_done": loops.get("batches_done"), "validated_at": loops.get("validated_at"),
                              "epoch_finished": loops.get("epoch_finished"), "should_stop": loops.get("should_stop")}


def window_ends(batch_idx: int, accumulate: int, batches: float) -> bool:
    """Whether an optimizer step follows the backward of batch `batch_idx` (the Trainer's rule)."""
    return (batch_idx + 1) % accumulate == 0 or batch_idx + 1 == batches


# --- kill points ---------------------------------------------------------------------------------------


class KillSwitch:
    """Counts every kill point; at the N-th occurrence of the chosen one, writes ROOT/killed.json and
    sends this process the signal."""

    def __init__(self, root: Path, spec: str | None, signum: int):
        self.root, self.signum = root, signum
        self.counts: dict[str, int] = {}
        self.point, self.occurrence, self.before = None, 0, False
        if spec:
            point, _, rest = spec.partition("#")
            number, _, where = rest.partition("@")
            if point not in POINTS_AFTER_CALLBACKS + SPECIAL_POINTS or where not in ("", "before"):
                raise ValueError(f"--kill {spec!r}: expected POINT#N or HOOK#N@before, POINT one of "
                                 f"{POINTS_AFTER_CALLBACKS + SPECIAL_POINTS}")
            if where and point in SPECIAL_POINTS:
                raise ValueError(f"--kill {spec!r}: @before applies to hook names only")
            self.point, self.occurrence, self.before = point, int(number), bool(where)

    def reached(self, point: str, trainer: Any, before: bool = False) -> None:
        """`point` happens (`before`: is about to happen, seen from the @before position)."""
        if trainer.sanity_checking:
            return
        if not before:  # each occurrence is counted once, at the after position
            self.counts[point] = self.counts.get(point, 0) + 1
        count = self.counts.get(point, 0) + (1 if before else 0)
        if point == self.point and before == self.before and count == self.occurrence:
            self.fire(trainer)

    def fire(self, trainer: Any, write: Any = None) -> None:
        where = {"point": self.point, "occurrence": self.occurrence, "before": self.before,
                 "signal": signal.Signals(self.signum).name}
        if trainer is not None:
            where.update(global_step=trainer.global_step, epoch=trainer.current_epoch,
                         batches_done=trainer.fit_state.batches_done)
        if write is not None:
            where["partial_write"] = write()  # half of a checkpoint, synced, just before the signal
        (self.root / "killed.json").write_text(json.dumps(where))
        print(f"killing myself with {where['signal']} at {where}", flush=True)
        os.kill(os.getpid(), self.signum)
        if self.signum == signal.SIGKILL:
            time.sleep(60)  # not reached: SIGKILL ends the process at once


class KillFirst(ember.Callback):
    """Listed first: its hooks run before every other callback's (the `@before` position)."""

    def __init__(self, switch: KillSwitch):
        self.switch = switch


class CheckpointThenKill(ModelCheckpoint):
    """The job's ModelCheckpoint. ember runs checkpoint callbacks after all others, so its hooks are the
    last callback code of each hook: the kill points fire here, after the checkpoint was written."""

    def __init__(self, switch: KillSwitch, accumulate: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.switch, self.accumulate = switch, accumulate
        self._stopped = False


def _hook(name: str, after: bool):
    base = getattr(ModelCheckpoint if after else ember.Callback, name)

    def hook(self, trainer, pl_module, *args):
        if not after:
            self.switch.reached(name, trainer, before=True)
            return base(self, trainer, pl_module, *args)
        base(self, trainer, pl_module, *args)
        self.switch.reached(name, trainer)
        if name == "on_after_backward":
            batch_idx = trainer.fit_state.batches_done  # set to batch_idx + 1 only after the batch
            if not window_ends(batch_idx, self.accumulate, trainer.num_training_batches):
                self.switch.reached("mid_accumulation", trainer)
        if name in ("on_validation_end", "on_train_epoch_end") and trainer.should_stop and not self._stopped:
            self._stopped = True
            self.switch.reached("early_stop", trainer)

    hook.__name__ = name
    return hook


for _name in POINTS_AFTER_CALLBACKS:
    setattr(KillFirst, _name, _hook(_name, after=False))
    setattr(CheckpointThenKill, _name, _hook(_name, after=True))


def watch_checkpoint_writes(trainer: ember.Trainer, switch: KillSwitch) -> None:
    """Count checkpoint files as the Trainer writes them (`checkpoint_file`, `checkpoint_write`); when the
    kill is in the middle of a write, make that torch.save write half of its bytes."""
    save = trainer.save_checkpoint

    def save_checkpoint(filepath, *args, **kwargs):
        if switch.point == "checkpoint_write" and switch.counts.get("checkpoint_write", 0) + 1 == switch.occurrence:
            interrupt_the_next_torch_save(switch, trainer)
        switch.counts["checkpoint_write"] = switch.counts.get("checkpoint_write", 0) + 1
        save(filepath, *args, **kwargs)
        if not Path(filepath).name.startswith(ModelCheckpoint.CHECKPOINT_NAME_LAST):
            switch.reached("checkpoint_file", trainer)

    trainer.save_checkpoint = save_checkpoint


def interrupt_the_next_torch_save(switch: KillSwitch, trainer: ember.Trainer) -> None:
    """ember.checkpoint.save_checkpoint writes with torch.save into a temporary file: write half of the
    bytes, sync them, and send the signal."""
    real_save = torch.save

    def half_save(obj, f, *args, **kwargs):
        torch.save = real_save
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()

        def write_half():
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            path = os.readlink(f"/proc/self/fd/{f.fileno()}") if os.path.isdir("/proc/self/fd") else None
            return {"path": path, "written": len(data) // 2, "size": len(data)}

        switch.fire(trainer, write_half)
        f.write(data[len(data) // 2:])  # reached only if the signal did not end the process

    torch.save = half_save


# --- the run -------------------------------------------------------------------------------------------


def make_logger(config: dict[str, Any], root: Path):
    kind = config["logger"]
    if kind == "csv":
        return loggers.CSVLogger(root, name="logs")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(root, name="logs")
    if kind == "mlflow":
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # the sqlite store under ROOT
        return loggers.MLFlowLogger(experiment_name="killpoints", save_dir=root)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    os.environ.pop("WANDB_API_KEY", None)
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[variable] = str(root / "wandb-home" / variable.lower())
    return loggers.WandbLogger(save_dir=root, project="killpoints", offline=True)


def make_callbacks(config: dict[str, Any], switch: KillSwitch) -> list[ember.Callback]:
    callbacks: list[ember.Callback] = [KillFirst(switch)]
    if config["early_stopping"]:
        # min_delta is far above any change of the loss: the first check sets the best value and no later
        # check improves on it, so the fit stops at check patience + 1, whatever the values
        callbacks.append(EarlyStopping(monitor=monitored(config), patience=config["early_stopping"], min_delta=1e6))
    kind = config["checkpoint"]
    options: dict[str, Any] = {"save_last": True}
    if kind == "topk":
        options.update(monitor=monitored(config), save_top_k=2)
    elif isinstance(kind, int):
        options.update(every_n_train_steps=kind)
    callbacks.append(CheckpointThenKill(switch, config["accumulate"], **options))
    return callbacks


def newest_checkpoint(root: Path) -> str | None:
    found = [p for p in root.rglob("*.ckpt") if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


def run(root: Path, config: dict[str, Any], kill: str | None, signum: int, resume: bool) -> None:
    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    switch = KillSwitch(root, kill, signum)
    ember.seed_everything(SEED, verbose=False)
    model = KillpointModel(config)
    train_set: Dataset = regression_data(TRAIN_SAMPLES, seed=3)
    if config["augment"]:
        train_set = Jittered(train_set)
    train = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=config["num_workers"])
    val = [DataLoader(regression_data(VAL_SAMPLES, seed=10 + i), batch_size=BATCH_SIZE)
           for i in range(config["val_loaders"])]
    logger = make_logger(config, root)
    trainer = ember.Trainer(
        max_epochs=EPOCHS, default_root_dir=root, deterministic=True, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, logger=logger,
        callbacks=make_callbacks(config, switch), precision=config["precision"],
        accumulate_grad_batches=1 if config["manual"] else config["accumulate"],
        val_check_interval=config["val_check_interval"],
    )
    watch_checkpoint_writes(trainer, switch)
    ckpt_path = None
    if resume:
        ckpt_path = "last" if config["resume_from"] == "last" else newest_checkpoint(root)
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val if len(val) > 1 else val[0], ckpt_path=ckpt_path)
    seconds = time.monotonic() - started
    torch.save(model.state_dict(), root / "weights.pt")
    checkpoint = trainer.checkpoint_callback
    result = {
        "config": config,
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "should_stop": trainer.should_stop,
        "callback_metrics": {k: v.item() for k, v in sorted(trainer.callback_metrics.items())},
        "lr": trainer.optimizers[0].param_groups[0]["lr"],
        "log_dir": logger.log_dir,
        "logger_version": logger.version,
        "checkpoint_dir": checkpoint.dirpath,
        "checkpoint_files": sorted(p.name for p in Path(checkpoint.dirpath).glob("*.ckpt")),
        "best_k_models": sorted(Path(p).name for p in checkpoint.best_k_models),
        "resumed_from": model.restored_from,
        "ckpt_path": trainer.ckpt_path,
        "warnings": [{"category": w.category.__name__, "message": str(w.message)} for w in caught],
        "counts": switch.counts,
        "fit_seconds": round(seconds, 3),
    }
    (root / "result.json").write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?")
    parser.add_argument("--config", default="{}", help="JSON object of options over DEFAULTS")
    parser.add_argument("--kill", help="POINT#N[@before]: where the process signals itself")
    parser.add_argument("--signal", default="KILL", choices=("KILL", "TERM"))
    parser.add_argument("--resume", action="store_true", help="fit with ckpt_path='last' (or the newest file)")
    parser.add_argument("--serve", action="store_true", help="run as the tests' fork server")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    if not args.root:
        parser.error("ROOT is required")
    config = check_config(json.loads(args.config))
    run(Path(args.root), config, args.kill, getattr(signal, f"SIG{args.signal}"), args.resume)


# --- fork server ---------------------------------------------------------------------------------------


def serve() -> None:
    """Run jobs for the tests, each in a child forked from this process.

    Starting Python and importing torch and ember takes seconds on a busy machine, many times what a job
    trains; this process pays it once. It says {"ready": true} on stdout when it has imported them, then
    reads one JSON request a line from stdin:
    {"argv": [...], "log": path, "timeout": seconds, "env": {...}, "preload": [modules]}. It imports
    the `preload` modules itself (a logger's library), then forks; the child, in its own process group
    with stdout and stderr going to `log`, runs `main(argv)` and exits. The reply, one JSON line on
    stdout, is {"returncode": N (-signal when a signal ended it, as subprocess reports), "timed_out":
    bool, "seconds": wall time}. Whatever the child left running (DataLoader workers, wandb's service) is
    killed with its process group before the reply.
    """
    torch.set_num_threads(1)
    _preload(BASE_PRELOAD)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        _preload(request.get("preload", ()))
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = _child(request)
            atexit._run_exitfuncs()  # what a plain Python process runs at exit (wandb's teardown, ...)
            os._exit(code)  # without tearing down the preloaded modules, which takes seconds
        returncode, timed_out = _wait(pid, request["timeout"])
        reply = {"returncode": returncode, "timed_out": timed_out, "seconds": round(time.monotonic() - started, 3)}
        print(json.dumps(reply), flush=True)


# torch.use_deterministic_algorithms imports torch._inductor: seconds, in every job
BASE_PRELOAD = ("torch._inductor", "torch.utils.tensorboard")


def _preload(names) -> None:
    """Import `names` here, once. None of them starts a thread, so forking afterwards is safe."""
    for name in names:
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                pass
    gc.freeze()  # the children's garbage collector leaves these objects alone (no copy-on-write)


def _child(request: dict[str, Any]) -> int:
    os.setpgid(0, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull)
    os.environ.update(request.get("env", {}))
    try:
        main(request["argv"])
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            _kill_group(pid)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    _kill_group(pid)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, timed_out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    main()
