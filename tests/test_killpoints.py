"""The kill-point matrix: a fit killed at any moment and resumed from its last checkpoint ends as if it had
never stopped.

Each cell runs tests/killpoint_job.py three times with one config: uninterrupted (once per config, shared
by the cells of that config), killed at a kill point (the job signals itself; see the job's docstring for
the points), and resumed in the killed run's folder with ckpt_path="last" (or the newest checkpoint's
path). Then the resumed run must match the uninterrupted one:

- the weights are torch.equal, and global_step, current_epoch and callback_metrics are the same;
- the logger holds each (key, step) exactly as often as the uninterrupted run's logger, with the same
  values, read back with the logger's own reader (the CSV file; TensorBoard's EventAccumulator; MLflow's
  client on the sqlite store; W&B's offline records through `wandb leet inspect`);
- the checkpoint folder holds the same files.

A resume with DataLoader workers that draw random numbers (augment=True, num_workers>0) cannot be exact
in the middle of an epoch: there the cell expects one warning that says so instead of equal weights.

    pytest tests/test_killpoints.py -m "not slow"   # the fast subset: each kill point and option once
    pytest tests/test_killpoints.py -m slow         # the cross product (see slow_cells)
    pytest "tests/test_killpoints.py::test_killpoint_cross_product[kill=on_train_end#1-ckpt=topk]"

(One cell, by its node id: `-k` does not accept the '#' of a cell's id.)

Timings (the server's start, each uninterrupted run, each killed and resumed run, reading the logs) are
printed at the end of the session. KILLPOINT_FORK_SERVER=0 runs every job as a fresh `python` process
instead of a child of the fork server (slower by the start-up time of each process).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from killpoint_job import BATCH_SIZE, DEFAULTS, OPTIONS, SPECIAL_POINTS, TRAIN_SAMPLES, check_config

# The warning a resume must give when DataLoader workers draw random numbers (augment=True with
# num_workers>0) and the checkpoint is in the middle of an epoch. ASSUMED PHRASE: the message names the
# workers and says the resume is not exact (e.g. "... DataLoader workers draw random numbers ... the
# resumed run is not exact ..."). Align this pattern with ember's message once it exists.
WORKER_WARNING = re.compile(r"(?is)worker processes.*not")

JOB = Path(__file__).resolve().parent / "killpoint_job.py"
REPO = JOB.parents[1]
JOB_TIMEOUT = 180  # seconds for one run of the job, on a busy machine
PRELOAD = {"mlflow": ["mlflow"], "wandb": ["wandb"]}  # what the fork server imports for a logger
BATCHES_PER_EPOCH = -(-TRAIN_SAMPLES // BATCH_SIZE)

# --- the cells ------------------------------------------------------------------------------------------

SHORT = {"val_check_interval": "vci", "accumulate": "acc", "scheduler": "sched", "manual": "manual",
         "precision": "prec", "val_loaders": "vals", "num_workers": "nw", "augment": "aug", "logger": "logger",
         "early_stopping": "es", "checkpoint": "ckpt", "resume_from": "resume"}


@dataclass(frozen=True)
class Cell:
    kill: str
    options: tuple[tuple[str, Any], ...]
    signal: str = "KILL"

    @property
    def config(self) -> dict[str, Any]:
        return check_config(dict(self.options))

    @property
    def point(self) -> str:
        return self.kill.split("#")[0]

    @property
    def occurrence(self) -> int:
        return int(self.kill.split("#")[1].split("@")[0])

    @property
    def id(self) -> str:
        parts = [f"kill={self.kill}"]
        for name, value in sorted(self.options, key=lambda item: list(SHORT).index(item[0])):
            if value == DEFAULTS[name]:
                continue
            if name == "checkpoint" and isinstance(value, int):
                value = f"every{value}"
            if isinstance(value, bool):
                parts.append(SHORT[name])
            else:
                parts.append(f"{SHORT[name]}={value}")
        if self.signal != "KILL":
            parts.append(f"sig={self.signal}")
        return "-".join(parts)


def cell(kill: str, signal: str = "KILL", **options: Any) -> Cell:
    return Cell(kill, tuple(sorted(options.items())), signal)


# Each kill point once and each option once, with the options expected to work combined and each known
# trouble spot in a cell of its own.
FAST = [
    cell("on_train_batch_end#7", checkpoint=3),
    cell("checkpoint_write#4", checkpoint=3),  # the 4th write is step 6's last.ckpt
    cell("on_train_batch_end#16", signal="TERM", checkpoint=3),
    cell("on_before_optimizer_step#2", checkpoint=1, scheduler="step", precision="bf16-mixed"),
    # a checkpoint written in on_validation_end, in the middle of an accumulation window
    cell("on_validation_end#2", val_check_interval=0.25, accumulate=3),
    cell("on_validation_end#3", val_check_interval=3),
    # EarlyStopping must count the checks it saw before the kill once
    cell("on_validation_end#2", val_check_interval=0.5, early_stopping=2),
    cell("early_stop#1", val_check_interval=0.5, early_stopping=2),
    cell("on_validation_batch_end#3", val_loaders=2, checkpoint=1, scheduler="plateau_epoch"),
    # ReduceLROnPlateau stepping every step on a value read from callback_metrics
    cell("on_train_epoch_end#1", scheduler="plateau_step"),
    cell("on_train_epoch_end#2@before"),
    cell("on_train_end#1", early_stopping=1),
    cell("mid_accumulation#4", accumulate=3, checkpoint=1),
    cell("mid_accumulation#5", accumulate=3, manual=True, checkpoint=1),
    cell("checkpoint_file#2", checkpoint="topk"),
    cell("checkpoint_file#2", checkpoint="topk", resume_from="newest"),
    cell("on_train_batch_end#13", checkpoint=4, num_workers=2),
    cell("on_train_batch_end#13", checkpoint=4, num_workers=2, augment=True),
    cell("on_train_batch_end#15", checkpoint=4, logger="tensorboard"),
    cell("on_train_batch_end#15", checkpoint=4, logger="mlflow"),
    cell("on_train_batch_end#15", checkpoint=4, logger="wandb"),
]

# The slow matrix: every kill point across the axes that decide where checkpoints fall (accumulation x
# validation interval x checkpoint kind), then across each other option on its own (over
# every_n_train_steps=3), then with SIGTERM. (All options crossed would be ~10^5 cells.)
SLOW_KILLS = [
    "on_train_batch_end#7", "on_train_batch_end#16", "on_before_optimizer_step#2", "on_before_optimizer_step#12",
    "on_validation_end#2", "on_validation_end#2@before", "on_validation_batch_end#3", "on_validation_batch_end#7",
    "on_train_epoch_end#1", "on_train_epoch_end#1@before", "on_train_epoch_end#2", "on_train_end#1",
    "mid_accumulation#4", "checkpoint_file#2", "checkpoint_write#3", "checkpoint_write#4", "early_stop#1",
]
SLOW_AXES = {"accumulate": (1, 3), "val_check_interval": (1.0, 0.5, 0.25, 3), "checkpoint": ("last", "topk", 3)}
SLOW_VARIANTS = [
    {"scheduler": "step"}, {"scheduler": "plateau_step"}, {"scheduler": "plateau_epoch"},
    {"manual": True}, {"manual": True, "accumulate": 3}, {"precision": "bf16-mixed"}, {"val_loaders": 2},
    {"num_workers": 2}, {"augment": True}, {"augment": True, "num_workers": 2},
    {"logger": "tensorboard"}, {"logger": "mlflow"}, {"logger": "wandb"},
    {"early_stopping": 1}, {"early_stopping": 2, "val_check_interval": 0.5}, {"resume_from": "newest"},
]


def needed(kill: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options`, with what the kill point needs to occur at all: an accumulation window, or EarlyStopping."""
    point = kill.split("#")[0]
    if point == "mid_accumulation" and options.get("accumulate", 1) == 1:
        return {**options, "accumulate": 3}
    if point == "early_stop" and not options.get("early_stopping"):
        return {**options, "early_stopping": 2}
    return options


def slow_cells() -> list[Cell]:
    cells = []
    for kill in SLOW_KILLS:
        for values in itertools.product(*SLOW_AXES.values()):
            cells.append(cell(kill, **needed(kill, dict(zip(SLOW_AXES, values)))))
        for variant in SLOW_VARIANTS:
            cells.append(cell(kill, **needed(kill, {"checkpoint": 3, **variant})))
        cells.append(cell(kill, signal="TERM", **needed(kill, {"checkpoint": 3})))
    fast = {c.id for c in FAST}
    unique = {c.id: c for c in cells if c.id not in fast}  # the same cell reached twice runs once
    return list(unique.values())


# --- running the job ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    timed_out: bool
    seconds: float
    log: str


class Jobs:
    """Runs the job: as children of the fork server (tests/killpoint_job.py --serve), or as fresh
    processes with KILLPOINT_FORK_SERVER=0. Every run has a timeout and nothing it started outlives it."""

    def __init__(self, timings: list[tuple[str, float]]):
        self.timings = timings
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                        WANDB_MODE="offline", WANDB_SILENT="true", MLFLOW_DISABLE_TELEMETRY="true",
                        PYTHONUNBUFFERED="1")
        self.env.pop("EMBER_GLOBAL_SEED", None)
        self.env.pop("WANDB_API_KEY", None)
        self.server: subprocess.Popen | None = None
        if os.environ.get("KILLPOINT_FORK_SERVER", "1") != "0":
            started = time.monotonic()
            self.server = subprocess.Popen([sys.executable, str(JOB), "--serve"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, env=self.env, cwd=REPO,
                                           start_new_session=True)
            try:
                assert json.loads(self._reply(timeout=300)) == {"ready": True}
            except BaseException:
                self.close()
                raise
            self.timings.append(("fork server start (imports torch, ember)", time.monotonic() - started))

    def run(self, what: str, root: Path, config: dict[str, Any], kill: str | None = None, signal_name: str = "KILL",
            resume: bool = False) -> Outcome:
        argv = [str(root), "--config", json.dumps(config)]
        if kill:
            argv += ["--kill", kill, "--signal", signal_name]
        if resume:
            argv.append("--resume")
        root.parent.mkdir(parents=True, exist_ok=True)
        log = root.parent / f"{root.name}-{what}.log"
        started = time.monotonic()
        if self.server is not None:
            outcome = self._ask_server(argv, log, PRELOAD.get(config["logger"], []))
        else:
            outcome = self._spawn(argv, log)
        self.timings.append((what, time.monotonic() - started))
        return outcome

    def _ask_server(self, argv: list[str], log: Path, preload: list[str]) -> Outcome:
        request = {"argv": argv, "log": str(log), "timeout": JOB_TIMEOUT, "preload": preload}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        reply = json.loads(self._reply(timeout=JOB_TIMEOUT + 120))  # the job, and the logger's import
        return Outcome(reply["returncode"], reply["timed_out"], reply["seconds"], _read(log))

    def _reply(self, timeout: float) -> str:
        with selectors.DefaultSelector() as selector:
            selector.register(self.server.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=timeout):
                raise RuntimeError(f"the fork server did not answer within {timeout} s")
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server ended (returncode {self.server.poll()})")
        return line

    def _spawn(self, argv: list[str], log: Path) -> Outcome:
        started = time.monotonic()
        with open(log, "w") as out:
            process = subprocess.Popen([sys.executable, str(JOB), *argv], stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env, cwd=REPO, start_new_session=True)
            timed_out = False
            try:
                process.wait(timeout=JOB_TIMEOUT)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(process.pid)  # the job if it timed out, and whatever it left (workers, wandb)
                process.wait()
        return Outcome(process.returncode, timed_out, time.monotonic() - started, _read(log))

    def close(self) -> None:
        if self.server is None:
            return
        try:
            self.server.stdin.close()
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(self.server.pid)
            self.server.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Run:
    root: Path
    result: dict[str, Any]
    weights: dict[str, torch.Tensor] = field(repr=False)

    @classmethod
    def load(cls, root: Path) -> "Run":
        result = json.loads((root / "result.json").read_text())
        return cls(root, result, torch.load(root / "weights.pt", weights_only=True))


def _must_succeed(outcome: Outcome, what: str) -> None:
    assert not outcome.timed_out, f"{what} ran past {JOB_TIMEOUT} s; log:\n{outcome.log[-3000:]}"
    assert outcome.returncode == 0, f"{what} failed (returncode {outcome.returncode}); log:\n{outcome.log[-3000:]}"


class Baselines:
    """The uninterrupted run of each config, run once per session."""

    def __init__(self, jobs: Jobs, folder: Path):
        self.jobs, self.folder, self.runs = jobs, folder, {}

    def get(self, config: dict[str, Any]) -> Run:
        config = {**config, "resume_from": DEFAULTS["resume_from"]}  # an uninterrupted run never resumes
        key = json.dumps(config, sort_keys=True)
        if key not in self.runs:
            root = self.folder / f"config{len(self.runs)}"
            _must_succeed(self.jobs.run("uninterrupted", root, config), f"the uninterrupted run of {key}")
            self.runs[key] = Run.load(root)
        return self.runs[key]


_TIMINGS: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def jobs(request):
    runner = Jobs(_TIMINGS)
    yield runner
    runner.close()
    _report_timings(request.config)


@pytest.fixture(scope="session")
def baselines(jobs, tmp_path_factory):
    return Baselines(jobs, tmp_path_factory.mktemp("uninterrupted"))


def _report_timings(config) -> None:
    if not _TIMINGS:
        return
    totals: dict[str, list[float]] = defaultdict(list)
    for what, seconds in _TIMINGS:
        totals[what].append(seconds)
    lines = ["", "kill-point matrix timings (seconds):"]
    for what, values in totals.items():
        lines.append(f"  {what:<42} {len(values):>4} x  total {sum(values):7.1f}  mean "
                     f"{sum(values) / len(values):6.2f}  max {max(values):6.2f}")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():  # shown whatever -s says, as capsys.disabled() does
        print("\n".join(lines))


# --- reading back what the loggers hold -----------------------------------------------------------------

Rows = dict[tuple[str, int], list[float]]  # (key, step) -> the values logged, in order


def logged_rows(run: Run, config: dict[str, Any]) -> Rows:
    started = time.monotonic()
    reader = {"csv": _csv_rows, "tensorboard": _tensorboard_rows, "mlflow": _mlflow_rows,
              "wandb": _wandb_rows}[config["logger"]]
    rows = reader(run)
    _TIMINGS.append((f"read back {config['logger']} rows", time.monotonic() - started))
    return rows


def _add(rows: Rows, key: str, step: int, value: float) -> None:
    if key != "epoch":  # every row carries the epoch; it is not a metric of its own
        rows.setdefault((key, int(step)), []).append(float(value))


def _csv_rows(run: Run) -> Rows:
    rows: Rows = {}
    with open(Path(run.result["log_dir"]) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value not in ("", None):
                    _add(rows, key, int(row["step"]), float(value))
    return rows


def _tensorboard_rows(run: Run) -> Rows:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(run.result["log_dir"], size_guidance={"scalars": 0})
    accumulator.Reload()  # drops what a run wrote at or after the purge_step of the run that followed it
    rows: Rows = {}
    for tag in accumulator.Tags()["scalars"]:
        for event in accumulator.Scalars(tag):
            _add(rows, tag, event.step, event.value)
    return rows


def _mlflow_rows(run: Run) -> Rows:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{(run.root / 'mlruns' / 'mlflow.db').resolve()}")
    run_id = run.result["logger_version"]
    rows: Rows = {}
    for key in client.get_run(run_id).data.metrics:
        for metric in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
            _add(rows, key, metric.step, metric.value)
    return rows


def _wandb_rows(run: Run) -> Rows:
    """Every history row of every offline run folder of the run id (a resumed run adds a folder)."""
    import wandb

    run_id = run.result["logger_version"]
    folders = sorted((run.root / "wandb").glob(f"offline-run-*-{run_id}"))
    assert folders, f"no offline W&B run folder of {run_id} under {run.root / 'wandb'}"
    rows: Rows = {}
    for folder in folders:
        run_file = next(folder.glob("run-*.wandb"))
        command = [wandb.util.get_core_path(), "leet", "inspect", "--no-observability", "--json",
                   "--run-file", str(run_file), str(folder.parent)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
        for record in map(json.loads, out.splitlines()):
            if record["type"] != "history":
                continue
            item = record["history"]["item"]
            step = item.get("trainer/global_step")
            for key, value in item.items():
                if not key.startswith("_") and key != "trainer/global_step" and isinstance(value, (int, float)):
                    _add(rows, key, step, value)
    return rows


# --- comparing ------------------------------------------------------------------------------------------


def _short(items: list[Any], limit: int = 6) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def compare_rows(expected: Rows, found: Rows, values: bool) -> list[str]:
    problems = []
    counts_expected = Counter({k: len(v) for k, v in expected.items()})
    counts_found = Counter({k: len(v) for k, v in found.items()})
    extra = sorted(counts_found - counts_expected)
    missing = sorted(counts_expected - counts_found)
    if extra:
        problems.append("logger rows logged more often than by the uninterrupted run (key@step found/expected): "
                        + _short([f"{k}@{s} {counts_found[(k, s)]}/{counts_expected[(k, s)]}" for k, s in extra]))
    if missing:
        problems.append("logger rows missing (key@step found/expected): "
                        + _short([f"{k}@{s} {counts_found[(k, s)]}/{counts_expected[(k, s)]}" for k, s in missing]))
    if values and not extra and not missing:
        differ = sorted(k for k in expected if expected[k] != found[k])
        if differ:
            problems.append("logged values differ from the uninterrupted run: "
                            + _short([f"{k}@{s} {found[(k, s)]} vs {expected[(k, s)]}" for k, s in differ]))
    return problems


def compare(base: Run, resumed: Run, config: dict[str, Any], exact: bool) -> list[str]:
    problems = []
    for name in ("global_step", "current_epoch"):
        if resumed.result[name] != base.result[name]:
            problems.append(f"{name} {resumed.result[name]} after the resume, {base.result[name]} uninterrupted")
    if exact:
        differ = [k for k in base.weights if not torch.equal(base.weights[k], resumed.weights[k])]
        if differ:
            problems.append(f"weights differ from the uninterrupted run: {_short(differ)}")
    found = logged_rows(resumed, config)
    if config["logger"] == "wandb" and resumed.result["resumed_from"] is not None:
        # W&B cannot delete rows: the resume says that those after the checkpoint are there twice (the
        # ones at the checkpoint's last step and after), and each must be there at least once
        said = any("W&B cannot delete logged rows" in w["message"] for w in resumed.result["warnings"])
        problems += [] if said else ["WandbLogger did not warn that rows after the checkpoint appear twice"]
        first = resumed.result["resumed_from"]["global_step"] - 1 if resumed.result["resumed_from"] else 0
        expected = logged_rows(base, config)
        found = {k: v[:len(expected.get(k, []))] if k[1] >= first else v for k, v in found.items()}
    problems += compare_rows(logged_rows(base, config), found, values=exact)
    if exact and resumed.result["callback_metrics"] != base.result["callback_metrics"]:
        problems.append(f"callback_metrics {resumed.result['callback_metrics']} after the resume, "
                        f"{base.result['callback_metrics']} uninterrupted")
    if resumed.result["checkpoint_files"] != base.result["checkpoint_files"]:
        problems.append(f"checkpoint files {resumed.result['checkpoint_files']} after the resume, "
                        f"{base.result['checkpoint_files']} uninterrupted")
    return problems


def resumed_mid_epoch(resumed: Run) -> bool:
    """The resume starts inside an epoch that has training batches left to load."""
    restored = resumed.result["resumed_from"]
    return bool(restored and 0 < restored["batches_done"] < BATCHES_PER_EPOCH and not restored["epoch_finished"])


def kill_and_resume(c: Cell, jobs: Jobs, baselines: Baselines, tmp_path: Path, strict: bool) -> None:
    """Run the cell; `strict` (the fast cells): the kill point must occur and the resume must load a
    checkpoint, else the cell tests nothing (a harness error); otherwise such a cell is skipped."""
    config = c.config
    base = baselines.get(config)
    if base.result["counts"].get(c.point, 0) < c.occurrence:
        message = f"{c.kill} does not occur in this config (the uninterrupted run had {base.result['counts']})"
        if strict:
            pytest.fail(f"harness: {message}")
        pytest.skip(message)

    root = tmp_path / "run"
    killed = jobs.run("killed", root, config, kill=c.kill, signal_name=c.signal)
    assert not killed.timed_out, f"the killed run ran past {JOB_TIMEOUT} s; log:\n{killed.log[-3000:]}"
    assert (root / "killed.json").exists(), f"the kill point {c.kill} was not reached; log:\n{killed.log[-3000:]}"
    where = json.loads((root / "killed.json").read_text())
    if c.signal == "KILL":
        assert killed.returncode == -signal.SIGKILL, \
            f"the run did not die by SIGKILL (returncode {killed.returncode}); log:\n{killed.log[-3000:]}"
        partial = where.get("partial_write")
        if partial and partial["path"]:  # killed in the middle of a checkpoint write: half of it is on disk
            assert 0 < Path(partial["path"]).stat().st_size == partial["written"] < partial["size"]
    # SIGTERM: ember may die of it or catch it and save a checkpoint; either way the resume below is exact

    _must_succeed(jobs.run("resumed", root, config, resume=True), "the resumed run")
    resumed = Run.load(root)
    print(f"killed at {where}; resumed from {resumed.result['resumed_from']} ({resumed.result['ckpt_path']})")
    if strict:
        assert resumed.result["resumed_from"] is not None, \
            f"harness: no checkpoint to resume from when killed at {where}; pick a later kill point"

    workers_draw = config["augment"] and config["num_workers"] > 0 and resumed_mid_epoch(resumed)
    problems = compare(base, resumed, config, exact=not workers_draw)
    if workers_draw:
        warned = [w["message"] for w in resumed.result["warnings"] if WORKER_WARNING.search(w["message"])]
        if len(warned) != 1:
            problems.append(f"expected one warning matching {WORKER_WARNING.pattern!r} on this resume (workers "
                            f"draw random numbers), got {len(warned)}; all warnings: "
                            f"{[w['message'][:200] for w in resumed.result['warnings']]}")
    assert not problems, f"killed at {where}, resumed from {resumed.result['resumed_from']}:\n- " + \
        "\n- ".join(problems)


@pytest.mark.parametrize("c", FAST, ids=[c.id for c in FAST])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(c, jobs, baselines, tmp_path):
    kill_and_resume(c, jobs, baselines, tmp_path, strict=True)


SLOW = slow_cells()


@pytest.mark.slow
@pytest.mark.parametrize("c", SLOW, ids=[c.id for c in SLOW])
def test_killpoint_cross_product(c, jobs, baselines, tmp_path):
    kill_and_resume(c, jobs, baselines, tmp_path, strict=False)


def test_the_fast_cells_cover_every_kill_point_and_option():
    points = {c.point for c in FAST} | {"@before" for c in FAST if "@before" in c.kill}
    points |= {f"SIG{c.signal}" for c in FAST}
    wanted = {"on_train_batch_end", "on_before_optimizer_step", "on_validation_end", "on_validation_batch_end",
              "on_train_epoch_end", "on_train_end", "@before", "SIGKILL", "SIGTERM", *SPECIAL_POINTS}
    assert wanted <= points, f"no fast cell for {sorted(wanted - points)}"
    every_n = OPTIONS["checkpoint"][2]  # stands for any every_n_train_steps
    seen = {(name, every_n if name == "checkpoint" and isinstance(value, int) else value)
            for c in FAST for name, value in c.config.items()}
    unseen = [(name, value) for name, values in OPTIONS.items() for value in values if (name, value) not in seen]
    assert not unseen, f"options no fast cell uses: {unseen}"
