"""Turn the raw measurements of a run into summaries (JSON) and tables (Markdown).

A cell reads `median (min–max)` over the rounds; ratio rows divide each contender's median by
the baseline's median (the hand-written loop, or plain torch); delta rows subtract it.
"""

import statistics
from dataclasses import dataclass

LABELS = {
    "handwritten": "hand-written",
    "ember-bare": "ember bare",
    "ember-defaults": "ember defaults",
    "lightning-bare": "Lightning bare",
    "lightning-defaults": "Lightning defaults",
    "torch": "torch",
    "ember": "ember",
    "lightning": "Lightning",
    "python": "python -c pass",
    "handwritten-ddp": "hand-written DDP",
    "ember-ddp": "ember DDP",
    "lightning-ddp": "Lightning DDP",
    "handwritten-1": "hand-written, 1 process",
    "ember-1": "ember, 1 process",
    "lightning-1": "Lightning, 1 process",
}


@dataclass
class Metric:
    label: str
    key: str
    fmt: str = "{:.2f}"
    ratio: bool = False
    delta: str = ""  # label of a "minus the baseline" row; empty for none


LOOP = Metric("loop, µs/step", "us_per_step", "{:.0f}", ratio=True, delta="loop overhead, µs/step")
LOOP_CPU = Metric(
    "loop CPU, µs/step", "cpu_us_per_step", "{:.0f}", ratio=True, delta="loop CPU overhead, µs/step"
)
WALL = Metric("process wall, s", "wall_s", "{:.2f}", ratio=True)
CPU = Metric("process CPU, s", "cpu_s", "{:.2f}", ratio=True)
FIRST = Metric("spawn to first batch, s", "first_batch_since_spawn_s", "{:.2f}")

METRICS = {
    "step_overhead": [LOOP, LOOP_CPU, WALL, CPU, FIRST],
    "logging": [LOOP, LOOP_CPU, WALL, CPU],
    "compute": [LOOP, LOOP_CPU, WALL, CPU],
    "ddp": [
        Metric("loop, µs/global step", "us_per_step", "{:.0f}", ratio=True, delta="loop overhead, µs/step"),
        Metric("rank 0 loop CPU, µs/step", "cpu_us_per_step", "{:.0f}", ratio=True,
               delta="loop CPU overhead, µs/step"),
        WALL,
        FIRST,
    ],
    "imports": [
        Metric("process wall, s", "wall_s", "{:.3f}", ratio=True, delta="over import torch, s"),
        Metric("process CPU, s", "cpu_s", "{:.3f}", ratio=True, delta="CPU over import torch, s"),
    ],
    "memory": [Metric("peak RSS, MB", "maxrss_mb", "{:.0f}", ratio=True, delta="over hand-written, MB")],
    "checkpoint": [
        Metric("save, s", "save_s", "{:.3f}", ratio=True),
        Metric("load, s", "load_s", "{:.3f}", ratio=True),
        Metric("file, MB", "file_mb", "{:.1f}"),
        Metric("atomic save of the torch dict, s", "atomic_save_plain_s", "{:.3f}"),
        WALL,
    ],
    "resume": [
        Metric("spawn to first batch after resume, s", "time_to_first_batch_s", "{:.2f}", ratio=True),
        Metric("`__getitem__` calls before that batch", "getitem_before_first_batch", "{:.0f}"),
        Metric("`__getitem__` calls in the whole run", "getitem_total", "{:.0f}"),
        Metric("same samples as the uninterrupted run's batch", "same_batch_as_uninterrupted", "yes/no"),
        Metric("batch_idx of that batch", "first_batch_idx", "{:.0f}"),
        Metric("global_step after fit", "global_step", "{:.0f}"),
        Metric("process wall, s", "wall_s", "{:.2f}"),
        Metric("process CPU, s", "cpu_s", "{:.2f}", ratio=True),
    ],
    "epoch_boundary": [
        Metric("epoch boundary, ms", "boundary_ms", "{:.1f}", ratio=True, delta="over hand-written, ms"),
        Metric(
            "epoch boundary CPU, ms", "boundary_cpu_ms", "{:.1f}", ratio=True, delta="CPU over hand-written, ms"
        ),
        WALL,
        CPU,
    ],
}


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(workload):
    """Add `summary` (metric key -> stats, ratio, delta) to each contender that has results."""
    contenders = workload["contenders"]
    metrics = METRICS[workload["metrics"]]
    for entry in contenders.values():
        runs = [run for run in entry.get("runs", []) if run.get("ok")]
        entry["summary"] = {}
        for m in metrics:
            values = [run[m.key] for run in runs if run.get(m.key) is not None]
            if values:
                entry["summary"][m.key] = stats(values)
    base = contenders.get(workload["baseline"], {}).get("summary", {})
    for entry in contenders.values():
        for key, s in entry["summary"].items():
            if key in base and base[key]["median"]:
                s["ratio"] = s["median"] / base[key]["median"]
                s["delta"] = s["median"] - base[key]["median"]


def cell(entry, metric, field=None):
    status = entry.get("status", "ok")
    if status != "ok":
        return status
    s = entry["summary"].get(metric.key)
    if s is None:
        return "error" if entry.get("errors") else "–"
    if field == "ratio":
        return f"{s['ratio']:.2f}×" if "ratio" in s else "–"
    if field == "delta":
        return (("+" if s["delta"] >= 0 else "") + metric.fmt.format(s["delta"])) if "delta" in s else "–"
    if metric.fmt == "yes/no":
        return "yes" if s["min"] == 1 else "no" if s["max"] == 0 else "in some rounds"
    text = metric.fmt.format(s["median"])
    if s["n"] > 1 and s["min"] != s["max"]:
        text += f" ({metric.fmt.format(s['min'])}–{metric.fmt.format(s['max'])})"
    return text


def table(workload, metrics=None):
    names = list(workload["contenders"])
    base_label = LABELS.get(workload["baseline"], workload["baseline"])
    lines = [
        "| | " + " | ".join(LABELS.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in metrics or METRICS[workload["metrics"]]:
        entries = [workload["contenders"][n] for n in names]
        lines.append(f"| {m.label} | " + " | ".join(cell(e, m) for e in entries) + " |")
        if m.ratio:
            row = " | ".join(cell(e, m, "ratio") for e in entries)
            lines.append(f"| ratio to {base_label} | {row} |")
        if m.delta:
            lines.append(f"| {m.delta} | " + " | ".join(cell(e, m, "delta") for e in entries) + " |")
    return "\n".join(lines)


def notes(workload):
    """One line per contender on what it ran with, and the last line of each failure."""
    out = []
    for name, entry in workload["contenders"].items():
        runs = [run for run in entry.get("runs", []) if run.get("ok")]
        info = runs[0].get("info") if runs else None
        if info and ("logger" in info or "callbacks" in info):
            callbacks = ", ".join(info.get("callbacks") or []) or "none"
            out.append(
                f"- {LABELS.get(name, name)}: {info['framework']}; logger {info.get('logger')}; "
                f"callbacks {callbacks}."
            )
        for error in entry.get("errors", []):
            out.append(f"- **{LABELS.get(name, name)} failed** ({error['tag']}): `{error['last_line']}`")
        for note in entry.get("notes", []):
            out.append(f"- {LABELS.get(name, name)}: {note}")
    return out


def importtime_table(rows):
    lines = [
        "| module | depth | self, ms | cumulative, ms | cumulative without torch, ms |",
        "|---|---|---|---|---|",
    ]
    for name, depth, self_us, cumulative_us, without_us in rows:
        ms = " | ".join(f"{us / 1e3:.1f}" for us in (self_us, cumulative_us, without_us))
        lines.append(f"| `{name}` | {depth} | {ms} |")
    return "\n".join(lines)


def render(results):
    meta = results["meta"]
    out = [
        f"# ember benchmarks, {meta['date']}{' (quick)' if meta['quick'] else ''}",
        "",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores, {meta['platform']}; shared with other work "
        f"(load average {meta['load_before']} before, {meta['load_after']} after).",
        f"- Software: Python {meta['python']}, torch {meta['torch']}, ember {meta['ember']}, "
        f"Lightning {meta['lightning']}.",
        f"- Command: `{meta['command']}`; {meta['rounds']} round(s), {meta['duration_s'] / 60:.1f} min.",
        "- Method: every measurement is a fresh process; contenders are interleaved within each round "
        "(A B C A B C ...); `torch.set_num_threads(1)` in every child. Child stdout/stderr go to a "
        "log file, so there is no TTY: progress bars render as they do when piped, and terminal "
        "speed does not count.",
        "- Cells: median (min–max) over rounds. Ratios divide by the baseline's median; "
        "overhead rows subtract it. *Wall* rows are elapsed time; *CPU* rows are the process's "
        "CPU time (user + sys, all threads), which other work on a shared machine disturbs less.",
        "",
    ]
    for key, workload in results["workloads"].items():
        out += [f"## {workload['title']}", "", workload["description"], ""]
        out += [table(workload), ""]
        if key == "imports" and workload.get("importtime"):
            it = workload["importtime"]
            torch_ms = f"{it['torch'][3] / 1e3:.0f} ms" if it.get("torch") else "not imported"
            out += [
                "Top 10 offenders in `python -X importtime -c \"import ember\"` (one warm run), by "
                "cumulative time net of torch: torch and everything it imports are taken out "
                f"(torch itself: {torch_ms} in that run). Depth 0 is a top-level import.",
                "",
                importtime_table(it["top"]),
                "",
                "Optional or heavy packages `import ember` pulls in beyond what torch imports: "
                + (", ".join(f"`{n}`" for n in it["optional"]) or "none")
                + ".",
                "",
            ]
        lines = notes(workload)
        if lines:
            out += ["Notes:", "", *lines, ""]
    return "\n".join(out).rstrip() + "\n"
