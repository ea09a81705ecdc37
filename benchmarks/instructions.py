"""Instructions per training step under callgrind: workload 1's shapes, hand-written loop vs ember.

Wall and CPU time on a shared machine move by tens of percent between runs (benchmarks/results show
ranges of 1,100-1,900 us for the same loop), which hides an overhead of a few percent. The number of
instructions a step executes does not move: this counts them with valgrind's callgrind, switched on at
the second batch of the second epoch and dumped at that epoch's last batch, so imports, set-up and the
epoch ends are left out. Needs `valgrind` (apt install valgrind); each contender takes a few minutes.

    python -m benchmarks.instructions                      # hand, ember-bare, ember-defaults, 300 steps
    python -m benchmarks.instructions --steps 100 --only hand,ember-defaults

Writes benchmarks/results/<date>-instructions.md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("hand", "ember-bare", "ember-defaults")


def _control(*args: str) -> None:
    """Send a command to the callgrind running this process; poll with sleeps, so that the wait itself
    adds almost no instructions to what is counted."""
    if os.environ.get("EMBER_CALLGRIND") != "1":
        return
    process = subprocess.Popen(["callgrind_control", *args, str(os.getpid())], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None:
        time.sleep(0.002)


def child(contender: str, steps: int) -> None:
    """Train 2 epochs of `steps` batches; count the second epoch's batches 1..steps-1."""
    import warnings

    import torch
    import torch.nn.functional as F

    from benchmarks import common

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    x, y = common.classification_data(32 * steps, 64, 10)
    torch.manual_seed(0)
    if contender == "hand":
        model = common.mlp([64, 128, 10])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = common.loader(x, y, 32, shuffle=True)
        for epoch in range(2):
            for i, (xb, yb) in enumerate(loader):
                if epoch == 1 and i == 1:
                    _control("--instr=on")
                    _control("--zero")
                loss = F.cross_entropy(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if epoch == 1 and i == len(loader) - 1:
                    _control("--dump=loop")
        return
    fw = common.framework("ember")

    class Counter(fw.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                _control("--instr=on")
                _control("--zero")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == trainer.num_training_batches - 1:
                _control("--dump=loop")

    mode = contender.split("-", 1)[1]
    model = common.classifier_class(fw.Module, 0)([64, 128, 10])
    trainer = fw.Trainer(max_epochs=2, callbacks=[Counter()], **common.trainer_kwargs(mode, tempfile.mkdtemp()))
    trainer.fit(model, common.loader(x, y, 32, shuffle=True))


def measure(contender: str, steps: int) -> int:
    """Instructions per counted step of `contender`, in a process under callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                   sys.executable, "-m", "benchmarks.instructions", "--child", contender, "--steps", str(steps)]
        env = {**os.environ, "EMBER_CALLGRIND": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dumps = sorted(Path(folder).glob("callgrind.out.*"))
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump for {contender}: is the loop reached?")
        for line in dumps[0].read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1]) // (steps - 1)
    raise RuntimeError(f"no summary line in the callgrind dump of {contender}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    contenders = [c for c in args.only.split(",") if c]
    if "hand" not in contenders:
        contenders.insert(0, "hand")
    counts = {c: measure(c, args.steps) for c in contenders}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [f"# Instructions per training step, {datetime.date.today()}", "",
             f"- ember {commit.strip() or '?'}; `python -m benchmarks.instructions --steps {args.steps}` "
             f"(callgrind; see benchmarks/instructions.py).",
             "- Workload 1's shapes (MLP 64→128→10, batch 32, Adam, shuffled TensorDataset); the second epoch's "
             "batches 1..N-1 counted.", "",
             "| contender | instructions per step | ratio to hand-written | overhead per step |", "|---|---|---|---|"]
    for c, n in counts.items():
        lines.append(f"| {c} | {n:,} | {n / counts['hand']:.3f}× | {n - counts['hand']:+,} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / f"{datetime.date.today()}-instructions.md").write_text(text)


if __name__ == "__main__":
    main()
