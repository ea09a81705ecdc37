"""The end of a sweep: a table of trials (params -> objective, status, time), printed and written to
`sweep.csv` and `sweep.md` in the sweep folder.

Trials record themselves (run.json in each trial folder, see runs.py); this reads those records, so the
table also covers trials finished before the sweep was killed and started again.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ember.experiment.runs import RUN_FILE

# what the last sweep of this process found: {"total", "failed", "dir"}; read by `ember <stage>` for its exit code
LAST_SUMMARY: dict[str, Any] = {}
COLUMNS = ("trial", "params", "objective", "status", "seconds")


def trial_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for record in Path(sweep_dir).glob(f"*/{RUN_FILE}"):
        data = json.loads(record.read_text())
        name = record.parent.name
        rows.append({"trial": int(name) if name.isdigit() else name, "params": " ".join(data.get("params", [])),
                     "objective": data.get("metric"), "status": data.get("status"),
                     "seconds": data.get("seconds")})
    return sorted(rows, key=lambda r: (not isinstance(r["trial"], int), r["trial"] if isinstance(r["trial"], int)
                                       else 0, str(r["trial"])))


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: str | Path) -> list[dict[str, Any]]:
    sweep_dir = Path(sweep_dir)
    rows = trial_rows(sweep_dir)
    with open(sweep_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "sweep.md").write_text(markdown(rows))
    return rows


class SweepSummary(Callback):
    """Hydra callback (in ember's hydra/default.yaml): writes and prints the table when a sweep ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir)
        pruned = sum(r["status"] == "pruned" for r in rows)  # stopped by Optuna's pruner: not failures
        failed = sum(r["status"] not in ("done", "pruned") for r in rows)
        LAST_SUMMARY.update(total=len(rows), failed=failed, pruned=pruned, dir=str(sweep_dir))
        print(f"\nsweep {sweep_dir}: {len(rows) - failed - pruned} done, {failed} failed"
              f"{f', {pruned} pruned' if pruned else ''}\n{markdown(rows)}"
              f"(written to {sweep_dir / 'sweep.csv'} and {sweep_dir / 'sweep.md'})", flush=True)
