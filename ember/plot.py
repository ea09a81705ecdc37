"""Draw the logged curves of one or several runs, side by side, from their CSV logs (`metrics.csv`).

`ember plot lightning_logs/version_0 lightning_logs/version_1 -o runs.png` on the command line, or
`plot_runs([...], "runs.png")` in Python; `ember plot <sweep folder>` (`plot_sweep`) draws a sweep's
objective against each parameter it varied. One subplot per group of keys: every loss together, each
other metric with its train/val/test and _step/_epoch variants, the learning rates together; x is the
global step; one line per run and key, named `<run>: <key>` in the legend.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

_NOT_CURVES = ("step", "epoch")  # the CSV's bookkeeping columns
_LINE_STYLES = ("-", "--", ":", "-.")


def plot_runs(paths: Iterable[str | os.PathLike], output: str | os.PathLike | None = None) -> Any:
    """Plot every logged key of the runs in `paths`; write the figure to `output` when given.

    Args:
        paths: run folders holding a `metrics.csv` (a CSVLogger `log_dir`), folders above them (every
            `metrics.csv` found below is a run), or `metrics.csv` files.
        output: the image file to write (PNG, or any format matplotlib knows by the extension).

    Returns:
        The matplotlib `Figure` (drawn with the Agg backend, without pyplot).

    Example:
        >>> fig = plot_runs(["lightning_logs/version_0", "lightning_logs/version_1"], "compare.png")
    """
    Figure, FigureCanvasAgg = _import_matplotlib()
    groups: dict[str, list[tuple[int, str, str, list[int], list[float]]]] = {}
    for index, (run, metrics_csv) in enumerate(_find_runs(paths)):
        for key, (steps, values) in _read_curves(metrics_csv).items():
            groups.setdefault(_group(key), []).append((index, run, key, steps, values))
    if not groups:
        raise ValueError(f"The runs in {[os.fspath(p) for p in paths]} logged no values to plot.")

    order = sorted(groups, key=lambda g: (g != "loss", g == "learning rate", g))
    columns = min(3, len(order))
    rows = math.ceil(len(order) / columns)
    figure = Figure(figsize=(5.5 * columns, 3.8 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for ax, group in zip(axes, order):
        keys = list(dict.fromkeys(key for _, _, key, _, _ in groups[group]))
        for index, run, key, steps, values in groups[group]:  # a color per run, a line style per key
            ax.plot(steps, values, label=f"{run}: {key}", color=f"C{index % 10}",
                    linestyle=_LINE_STYLES[keys.index(key) % len(_LINE_STYLES)],
                    marker="o" if len(steps) <= 20 else None, markersize=3)
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes:  # the grid's empty cells
        ax.set_visible(False)
    if output is not None:
        figure.savefig(output, dpi=100)
    return figure


def is_sweep(path: str | os.PathLike) -> bool:
    """A sweep folder of the `ember` command: Hydra's multirun.yaml or ember's sweep.csv in it."""
    return Path(path).is_dir() and any((Path(path) / name).is_file() for name in ("multirun.yaml", "sweep.csv"))


def plot_sweep(sweep_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Any:
    """Draw a sweep's objective against each parameter it varied: one subplot per parameter, one point per
    trial that finished (its `run.json` status done with a metric).

    Args:
        sweep_dir: the sweep folder (`hydra.sweep.dir`), with one trial folder per trial.
        output: the image file to write.

    Returns:
        The matplotlib `Figure`.

    Example:
        >>> fig = plot_sweep("multiruns/x/2026-12-02/10-00-00_ab12cd", "sweep.png")
    """
    trials = _read_trials(Path(sweep_dir))
    done = [t for t in trials if t["status"] == "done" and t["metric"] is not None]
    if not done:
        raise ValueError(f"{os.fspath(sweep_dir)!r}: no finished trial with an objective to plot "
                         f"({len(trials)} trial folders with a run.json).")
    swept = [k for k in dict.fromkeys(k for t in trials for k in t["params"])
             if len({t["params"].get(k) for t in trials}) > 1]
    if not swept:
        raise ValueError(f"{os.fspath(sweep_dir)!r}: the trials all have the same parameters; nothing was swept.")
    Figure, FigureCanvasAgg = _import_matplotlib()
    columns = min(3, len(swept))
    rows = math.ceil(len(swept) / columns)
    figure = Figure(figsize=(5 * columns, 3.8 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    objective = done[0]["monitor"] or "objective"
    for ax, key in zip(axes, swept):
        values = [t["params"].get(key) for t in done]
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            ax.scatter(numbers, [t["metric"] for t in done])
            if min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
                ax.set_xscale("log")
        else:  # categorical: one position per choice, in the order first seen
            labels = list(dict.fromkeys(map(str, values)))
            ax.scatter([labels.index(str(v)) for v in values], [t["metric"] for t in done])
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(key)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in axes[len(swept):]:
        ax.set_visible(False)
    figure.suptitle(f"{Path(sweep_dir).name}: {len(done)} of {len(trials)} trials done")
    if output is not None:
        figure.savefig(output, dpi=100)
    return figure


def _read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """status, metric, monitor and {parameter: value} of every trial folder's run.json."""
    trials = []
    for record in sorted(sweep_dir.glob("*/run.json")):
        data = json.loads(record.read_text())
        params = dict(p.lstrip("+~").split("=", 1) for p in data.get("params", []) if "=" in p)
        trials.append({"status": data.get("status"), "metric": data.get("metric"), "monitor": data.get("monitor"),
                       "params": params})
    return trials


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _find_runs(paths: Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """(label, metrics.csv) for every run in `paths`; a label is the run folder's last two parts."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / "metrics.csv").is_file():
            found.append(path / "metrics.csv")
        elif path.is_dir() and any(path.rglob("metrics.csv")):
            found.extend(sorted(path.rglob("metrics.csv")))
        else:
            raise FileNotFoundError(f"{os.fspath(path)!r} holds no metrics.csv (in it or below it). Pass the "
                                    "folder of a CSVLogger run, such as lightning_logs/version_0.")
    labels = ["/".join(p.parent.parts[-2:]) for p in found]
    if len(set(labels)) < len(labels):  # runs of different roots with the same names: use whole paths
        labels = [os.fspath(p.parent) for p in found]
    return list(zip(labels, found))


def _read_curves(metrics_csv: Path) -> dict[str, tuple[list[int], list[float]]]:
    curves: dict[str, tuple[list[int], list[float]]] = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in _NOT_CURVES or value in (None, ""):
                    continue
                steps, values = curves.setdefault(key, ([], []))
                steps.append(int(float(row["step"])))
                values.append(float(value))
    return curves


def _group(key: str) -> str:
    """The subplot of a key: 'loss', 'learning rate', or the metric's name without stage and suffix."""
    if key == "lr" or key.startswith(("lr-", "lr/")):
        return "learning rate"  # LearningRateMonitor's names: lr-<Optimizer>[/pg<i>][-momentum]
    if "loss" in key.lower():
        return "loss"
    name = re.sub(r"/dataloader_idx_\d+$", "", key)
    name = re.sub(r"_(step|epoch)$", "", name)
    return re.sub(r"^(train|val|valid|validation|test)[_/-]", "", name)


def _import_matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("ember plot needs matplotlib: pip install 'ember[plot]'") from err
    return Figure, FigureCanvasAgg
