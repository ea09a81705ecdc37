"""Workload 4: what `import ember` costs next to `import torch` and `import lightning.pytorch`.

Not run through benchmarks.child: each measurement is the whole `python -c "<statement>"` process,
timed by the parent. `python -c pass` is the interpreter's own start-up, for reference.
"""

STATEMENTS = {
    "python": "pass",
    "torch": "import torch",
    "ember": "import ember",
    "lightning": "import lightning.pytorch",
}

# Top-level packages that `import ember` should not pull in (optional extras or heavy libraries
# that only some features need); see DESIGN.md, "Import".
OPTIONAL = [
    "lightning",
    "pytorch_lightning",
    "lightning_utilities",
    "torchmetrics",
    "tensorboard",
    "tensorboardX",
    "mlflow",
    "wandb",
    "hydra",
    "omegaconf",
    "rich",
    "tqdm",
    "transformers",
    "matplotlib",
    "pandas",
    "scipy",
    "fastapi",
    "onnx",
    "onnxruntime",
    "psutil",
    "fsspec",
]


def parse_importtime(stderr_text):
    """Rows of `python -X importtime` output as (module, depth, self_us, cumulative_us)."""
    rows = []
    for line in stderr_text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        # One space follows the bar, then two more per level of nesting.
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((name.strip(), depth, int(self_us), int(cumulative_us)))
    return rows


def parents(rows):
    """Index of each row's importer (None at the top). importtime prints a module after the
    modules it imported, one level deeper, so a row adopts the deeper rows still waiting."""
    parent = [None] * len(rows)
    waiting = []
    for i, (_, depth, _, _) in enumerate(rows):
        while waiting and rows[waiting[-1]][1] > depth:
            parent[waiting.pop()] = i
        waiting.append(i)
    return parent


def split_off(rows, package="torch"):
    """Separate `package` (and everything it imports) from the rest.

    Returns (package_rows, other_rows); each other row gets a fifth field, its cumulative time
    minus the time of `package` imported beneath it, so ember's modules are ranked by their own
    cost and not by which of them happened to import torch first.
    """
    parent = parents(rows)
    inside = set()
    for i, (name, _, _, _) in enumerate(rows):
        j = i
        while j is not None:
            if rows[j][0] == package:
                inside.add(i)
                break
            j = parent[j]
    without = [cumulative for _, _, _, cumulative in rows]
    for i, (name, _, _, cumulative) in enumerate(rows):
        if name == package:
            j = parent[i]
            while j is not None:
                without[j] -= cumulative
                j = parent[j]
    package_rows = [rows[i] for i in sorted(inside)]
    other_rows = [(*rows[i], without[i]) for i in range(len(rows)) if i not in inside]
    return package_rows, other_rows


def top_offenders(rows, n=10):
    """The `n` imports outside torch with the largest cumulative time net of torch, and torch's own
    row (None if torch was not imported)."""
    torch_rows, other = split_off(rows)
    torch_row = next((row for row in torch_rows if row[0] == "torch"), None)
    return sorted(other, key=lambda row: row[4], reverse=True)[:n], torch_row


def optional_imported(rows):
    """Which OPTIONAL top-level packages are imported, not counting those torch imports itself."""
    _, other = split_off(rows)
    top_level = {row[0].split(".")[0] for row in other}
    return [name for name in OPTIONAL if name in top_level]
