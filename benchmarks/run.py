"""Run the benchmark workloads in fresh processes and write the results.

Writes benchmarks/results/<YYYY-MM-DD>.md and .json (`-quick` added for --quick, `-partial` for
--only). Child logs and scratch files go to benchmarks/_work/ (git-ignored).

Example:
    python -m benchmarks.run --quick                   # smoke version, about 4 minutes on 2 idle cores
    python -m benchmarks.run                           # full: 3 rounds, about 13 minutes on 2 idle cores
    python -m benchmarks.run --only step_overhead,imports --rounds 5
"""

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import report
from benchmarks.workloads import imports

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "_work"

TRAINERS = ["handwritten", "ember-bare", "ember-defaults", "lightning-bare", "lightning-defaults"]
THREE = ["handwritten", "ember", "lightning"]

SMALL = dict(sizes=[64, 128, 10], n_samples=20_000, batch_size=32, epochs=3, log_keys=0)

# Each workload: the module in benchmarks/workloads that runs it, its contenders (the first is the
# baseline), and its parameters for the full and the quick run.
WORKLOADS = {
    "step_overhead": dict(
        title="1. Step overhead, small model",
        module="step_overhead",
        contenders=TRAINERS,
        full=SMALL,
        quick={**SMALL, "n_samples": 6_400, "epochs": 1},
        description=(
            "MLP 64→128→10 (ReLU), batch 32, {n_samples:,} fixed samples in a TensorDataset "
            "(shuffled), Adam lr 1e-3, cross-entropy, {epochs} epoch(s). Loop = first training "
            "batch start to last batch end (callback timestamps; inline in the hand-written loop). "
            "The module logs `train_loss` (prog_bar=True) every step in every Trainer contender; "
            "*bare* turns off logger, checkpointing, progress bar and summary, *defaults* leaves them "
            "on. Process wall includes interpreter start and imports."
        ),
    ),
    "logging": dict(
        title="2. Step overhead with 20 logged keys",
        module="step_overhead",
        contenders=TRAINERS,
        full={**SMALL, "n_samples": 9_600, "epochs": 1, "log_keys": 20},
        quick={**SMALL, "n_samples": 6_400, "epochs": 1, "log_keys": 20},
        description=(
            "As workload 1 but {n_samples:,} samples, {epochs} epoch (Lightning is slow here), plus "
            "`self.log(f\"m{{i}}\", loss.detach() + i, on_step=True, on_epoch=True)` for 20 keys each "
            "step. The hand-written loop computes the same 20 values, stacks them and adds them to "
            "an epoch sum (mean at epoch end)."
        ),
    ),
    "compute": dict(
        title="3. Compute-bound model",
        module="step_overhead",
        contenders=TRAINERS,
        full=dict(sizes=[784, 1024, 1024, 10], n_samples=128 * 32, batch_size=128, epochs=1, log_keys=0),
        quick=dict(sizes=[784, 1024, 1024, 10], n_samples=128 * 20, batch_size=128, epochs=1, log_keys=0),
        description=(
            "MLP 784→1024→1024→10, batch {batch_size}, {n_samples:,} samples, {epochs} epoch, one "
            "thread: the step is dominated by matmuls, so every contender should be within noise."
        ),
    ),
    "imports": dict(
        title="4. Import time",
        contenders=list(imports.STATEMENTS),
        description=(
            "Whole `python -c \"<statement>\"` processes, one per round, after the run's uncounted "
            "warm-up import; the baseline is `import torch`."
        ),
    ),
    "memory": dict(
        title="5. Peak memory, workload 1",
        description=(
            "Peak RSS of each workload-1 process (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), "
            "imports included."
        ),
    ),
    "checkpoint": dict(
        title="6a. Checkpoint save and load",
        module="checkpoint",
        contenders=["torch", "ember", "lightning"],
        full=dict(width=2500, depth=4, batch_size=8),
        quick=dict(width=1000, depth=4, batch_size=8),
        description=(
            "{depth} × Linear({width}, {width}) (~{params_m:.0f}M parameters) after one Adam step. "
            "torch: `torch.save` / `torch.load(weights_only=True)` of {{state_dict, optimizer state}}. "
            "ember: `trainer.save_checkpoint(path)` / `ember.checkpoint.load_checkpoint(path)`, plus "
            "`ember.checkpoint.save_checkpoint` of the torch contender's dict (the cost of the atomic "
            "write: temp file, fsync, rename). Lightning: `trainer.save_checkpoint(path)` / the loader "
            "its restore uses. One save and one load per process; the load reads a file just "
            "written (page cache)."
        ),
    ),
    "resume": dict(
        title="6b. Resume to a position mid-epoch",
        module="resume",
        contenders=THREE,
        setup=True,
        full=dict(batches_per_epoch=10_000, ckpt_step=9_000, batch_size=4),
        quick=dict(batches_per_epoch=1_000, ckpt_step=900, batch_size=4),
        description=(
            "Tiny MLP 8→16→2, batch {batch_size}, an epoch of {batches_per_epoch:,} batches "
            "(shuffled). Setup (untimed, once): `ModelCheckpoint(every_n_train_steps={ckpt_step}, "
            "save_last=True)` with `max_steps={ckpt_step_1}`; the step-{ckpt_step} checkpoint is the "
            "one resumed from, and the extra step records the uninterrupted run's next batch. "
            "Timed: a fresh process running "
            "`Trainer(max_steps={ckpt_step_1}).fit(model, loader, ckpt_path=...)`, from spawn to the "
            "start of the first training batch after the resume. `__getitem__` calls count the "
            "samples the dataset served: replaying the skipped batches would read "
            "{skipped:,} samples. Hand-written: loads model and optimizer, rebuilds the epoch's "
            "seeded order and starts its sampler at the saved position. *Same samples* compares the "
            "first batch after the resume with the batch the setup run trained on right after the "
            "checkpoint."
        ),
    ),
    "epoch_boundary": dict(
        title="7. Epoch boundaries",
        module="epoch_boundary",
        contenders=TRAINERS,
        full=dict(sizes=[64, 128, 10], batch_size=32, train_batches=50, val_batches=10, epochs=4),
        quick=dict(sizes=[64, 128, 10], batch_size=32, train_batches=50, val_batches=10, epochs=3),
        description=(
            "Workload 1's model, {train_batches} training batches and a {val_batches}-batch "
            "validation per epoch, {epochs} epochs. Boundary = last training batch end of an epoch "
            "to the first training batch start of the next (median of the {boundaries} boundaries "
            "per run): epoch-end hooks, validation, logging, checkpointing, the new train iterator. "
            "The hand-written loop validates (eval, no_grad, mean loss) and nothing else. Wall time "
            "includes waiting for the disk (a checkpoint's fsync); CPU time does not."
        ),
    ),
    "ddp": dict(
        title="8. DDP on 2 CPU processes",
        module="ddp",
        contenders=["handwritten-ddp", "ember-ddp", "lightning-ddp", "handwritten-1", "ember-1", "lightning-1"],
        full=dict(sizes=[64, 128, 10], n_samples=12_800, batch_size=32, epochs=2),
        quick=dict(sizes=[64, 128, 10], n_samples=6_400, batch_size=32, epochs=1),
        description=(
            "Workload 1's MLP, Adam, {n_samples:,} samples shuffled, {epochs} epoch(s), global batch "
            "{global_batch} ({global_steps} global steps): DDP contenders run 2 gloo processes of batch "
            "{batch_size} (one torch thread each), the *1 process* ones one process of batch {global_batch}. "
            "Loop = rank 0's first batch start to last batch end per global step. Hand-written DDP: "
            "torch.distributed + DistributedDataParallel + DistributedSampler, processes from "
            "torch.multiprocessing; ember and Lightning: `Trainer(accelerator='cpu', devices=2, "
            "strategy='ddp')`, bare, each re-running the command for its second process. The overhead row "
            "is each contender minus hand-written DDP. Process wall includes starting both processes and "
            "the process group."
        ),
    ),
}


def describe(key, params):
    """The workload's description with its parameters filled in."""
    extra = {}
    if key == "checkpoint":
        extra["params_m"] = params["depth"] * (params["width"] ** 2 + params["width"]) / 1e6
    if key == "resume":
        extra["ckpt_step_1"] = params["ckpt_step"] + 1
        extra["skipped"] = params["ckpt_step"] * params["batch_size"]
    if key == "epoch_boundary":
        extra["boundaries"] = params["epochs"] - 1
    if key == "ddp":
        extra["global_batch"] = 2 * params["batch_size"]
        extra["global_steps"] = params["epochs"] * -(-params["n_samples"] // (2 * params["batch_size"]))
    return WORKLOADS[key]["description"].format(**params, **extra)


def lightning_installed():
    return importlib.util.find_spec("lightning") is not None


def version_of(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tail(path, n=20):
    with open(path, errors="replace") as f:
        lines = [line.rstrip() for line in f if line.strip()]
    return lines[-n:]


class Runner:
    """Starts child processes one at a time, logs each, and keeps count."""

    def __init__(self, work, timeout):
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.count = 0
        self.last_cpu_s = None

    def spawn(self, cmd, tag):
        """Run `cmd` with output to logs/<tag>.log; return (returncode or 'timeout', wall seconds,
        the log's path). The child's CPU time (user + sys) is left in self.last_cpu_s."""
        self.count += 1
        log = self.logs / f"{tag}.log"
        env = {**os.environ, "BENCH_SPAWN_TIME": repr(time.time())}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(log, "w") as f:
            start = time.perf_counter()
            try:
                rc = subprocess.run(
                    cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                    timeout=self.timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return rc, wall, log

    def child(self, module, contender, params, tag):
        """One measurement through benchmarks.child; the result dict with `ok` and `wall_s`."""
        out = self.logs / f"{tag}.json"
        cmd = [
            sys.executable, "-m", "benchmarks.child", module, contender, str(out),
            "--params", json.dumps(params), "--workdir", str(self.work),
        ]
        rc, wall, log = self.spawn(cmd, tag)
        if rc == 0 and out.exists():
            with open(out) as f:
                result = {"ok": True, "wall_s": wall, "cpu_s": self.last_cpu_s, **json.load(f)}
        else:
            lines = tail(log)
            result = {"ok": False, "wall_s": wall, "returncode": rc, "log_tail": lines, "log": str(log)}
        status = f"{wall:6.1f} s" if result["ok"] else f"FAILED (rc {rc}, see {log})"
        print(f"  [{self.count:3d}] {tag:<45} {status}", flush=True)
        return result


def record(entry, tag, result):
    entry["runs"].append(result)
    if not result["ok"]:
        last = result["log_tail"][-1] if result["log_tail"] else f"exit {result['returncode']}"
        entry["errors"].append({"tag": tag, "last_line": last})


def new_entries(contenders, skip_lightning):
    entries = {}
    for name in contenders:
        missing = "lightning" in name and skip_lightning
        entries[name] = {"status": "not installed" if missing else "ok", "runs": [], "errors": []}
    return entries


def run_training_workload(runner, key, spec, params, rounds, skip_lightning):
    entries = new_entries(spec["contenders"], skip_lightning)
    active = [name for name, e in entries.items() if e["status"] == "ok"]
    if spec.get("setup"):
        for name in active:
            ckpt_dir = runner.work / f"{key}-{name}"
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            entries[name]["params"] = {**params, "ckpt_dir": str(ckpt_dir)}
            tag = f"{key}-setup-{name}"
            setup = runner.child(spec["module"], f"setup-{name}", entries[name]["params"], tag)
            entries[name]["setup"] = setup
            if not setup["ok"]:
                record(entries[name], tag, setup)
        active = [name for name in active if entries[name]["setup"]["ok"]]
    for r in range(rounds):
        for name in active:
            tag = f"{key}-{name}-r{r + 1}"
            run_params = entries[name].get("params", params)
            record(entries[name], tag, runner.child(spec["module"], name, run_params, tag))
    for name in active:
        entries[name].pop("params", None)
        if key == "resume" and "lightning" in name:
            logs = [runner.logs / f"{key}-{name}-r{r + 1}.log" for r in range(rounds)]
            texts = [p.read_text(errors="replace") for p in logs if p.exists()]
            if any("dataloader is not resumable" in text for text in texts):
                entries[name]["notes"] = [
                    "warned that the DataLoader is not resumable: after a mid-epoch resume it starts "
                    "a new pass over the data instead of continuing the saved epoch's order."
                ]
    return entries


def run_imports(runner, rounds, skip_lightning):
    entries = new_entries(imports.STATEMENTS, skip_lightning)
    active = [name for name, e in entries.items() if e["status"] == "ok"]
    for r in range(rounds):
        for name in active:
            tag = f"imports-{name}-r{r + 1}"
            rc, wall, log = runner.spawn([sys.executable, "-c", imports.STATEMENTS[name]], tag)
            result = {"ok": rc == 0, "wall_s": wall, "cpu_s": runner.last_cpu_s}
            if rc != 0:
                result.update(returncode=rc, log_tail=tail(log), log=str(log))
            print(f"  [{runner.count:3d}] {tag:<45} {wall:6.2f} s{'' if rc == 0 else ' FAILED'}", flush=True)
            record(entries[name], tag, result)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ember"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    importtime = None
    if proc.returncode == 0:
        rows = imports.parse_importtime(proc.stderr)
        top, torch_row = imports.top_offenders(rows)
        importtime = {"top": top, "torch": torch_row, "optional": imports.optional_imported(rows)}
    return entries, importtime


def warm_up(runner, skip_lightning):
    """Import everything once, uncounted: compiles .pyc files (ember's change often) and fills the
    page cache, so the first round is not penalized."""
    modules = ["ember", "ember.callbacks", "ember.checkpoint", "benchmarks.child"]
    modules += [f"benchmarks.workloads.{spec['module']}" for spec in WORKLOADS.values() if "module" in spec]
    if not skip_lightning:
        modules.append("lightning.pytorch")
    statement = "; ".join(f"import {m}" for m in modules)
    rc, wall, log = runner.spawn([sys.executable, "-c", statement], "warmup")
    print(f"warm-up imports: {wall:.1f} s{'' if rc == 0 else f' (failed, see {log})'}", flush=True)


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def git_commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "ember")
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in ember/' if dirty else ''}"


def load():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def write(results, name, started):
    results["meta"]["load_after"] = load()
    results["meta"]["duration_s"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.json", "w") as f:
        json.dump(results, f, indent=1)
    (RESULTS / f"{name}.md").write_text(report.render(results))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 round: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per workload (default 3, quick 1)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning contenders")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per child process")
    parser.add_argument("--name", default=None, help="results file name (default: the date)")
    args = parser.parse_args(argv)
    only = [k for k in args.only.split(",") if k]
    unknown = [k for k in only if k not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; available: {', '.join(WORKLOADS)}")
    if "memory" in only and "step_overhead" not in only:
        only.append("step_overhead")  # memory is read from workload 1's processes
    args.only = only
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    date = datetime.date.today().isoformat()
    name = args.name or date + ("-quick" if args.quick else "") + ("-partial" if args.only else "")
    work = WORK / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runner = Runner(work, args.timeout)
    skip_lightning = args.no_lightning or not lightning_installed()
    meta = {
        "date": date,
        "quick": args.quick,
        "rounds": args.rounds,
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu": machine(),
        "cores": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": version_of("torch"),
        "ember": git_commit(),
        "lightning": "skipped" if args.no_lightning else version_of("lightning"),
        "load_before": load(),
    }
    results = {"meta": meta, "workloads": {}}
    print(f"benchmarks: {args.rounds} round(s){' (quick)' if args.quick else ''}; logs in {runner.logs}")
    warm_up(runner, skip_lightning)
    for key, spec in WORKLOADS.items():
        if args.only and key not in args.only and not (key == "memory" and "step_overhead" in args.only):
            continue
        params = spec.get("quick" if args.quick else "full", {})
        if key == "memory":
            source = results["workloads"].get("step_overhead")
            if source is None:
                continue
            # Same processes as workload 1; the runs are listed there, not repeated here.
            entries = {
                contender: {"status": e["status"], "runs": e["runs"], "errors": []}
                for contender, e in source["contenders"].items()
            }
            workload = {"contenders": entries, "baseline": "handwritten", "params": source["params"]}
        elif key == "imports":
            print(f"{spec['title']}")
            entries, importtime = run_imports(runner, args.rounds, skip_lightning)
            workload = {"contenders": entries, "baseline": "torch", "params": params}
            workload["importtime"] = importtime
        else:
            print(f"{spec['title']}")
            entries = run_training_workload(runner, key, spec, params, args.rounds, skip_lightning)
            workload = {"contenders": entries, "baseline": spec["contenders"][0], "params": params}
        workload.update(
            title=spec["title"],
            description=describe(key, params),
            metrics=key,
        )
        report.summarize(workload)
        if key == "memory":
            for entry in workload["contenders"].values():
                entry["runs"] = []  # listed under step_overhead
        results["workloads"][key] = workload
        write(results, name, started)  # after every workload, so an interrupted run keeps its data
    for path in work.iterdir():  # checkpoints and scratch folders; the logs stay
        if path.is_dir() and path.name != "logs":
            shutil.rmtree(path, ignore_errors=True)
    print(f"wrote {RESULTS / name}.md and .json in {meta['duration_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
