"""The public names of Lightning's API, by section, read from the installed Lightning; and the rows of
docs/lightning-compat.md.

    python tests/lightning_names.py          # the names the table lacks (and rows Lightning no longer has)
    python tests/lightning_names.py --all    # every name, by section, with whether ember has it

tests/test_lightning_compat_table.py asserts that every name has a row.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import sys
import warnings
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "docs" / "lightning-compat.md"


def _public(obj) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def lightning_names() -> dict[str, list[str]]:
    """Section title -> the public names Lightning has there."""
    import torch
    import lightning.pytorch as L
    import lightning.pytorch.callbacks as callbacks
    import lightning.pytorch.cli as cli
    import lightning.pytorch.loggers as loggers
    import lightning.pytorch.utilities as utilities
    from lightning.pytorch.trainer import states
    from lightning.pytorch.tuner import Tuner

    module_names = set(dir(torch.nn.Module))
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        # an instance: `state`, `should_stop`, the loops and the arguments are set in __init__
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", devices=1)
    trainer_arguments = [p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self"]
    cli_arguments = [p for p in inspect.signature(cli.LightningCLI.__init__).parameters if p != "self"]
    return {
        "lightning.pytorch": sorted(L.__all__),
        "LightningModule": [n for n in _public(L.LightningModule) if n not in module_names],
        "LightningDataModule": _public(L.LightningDataModule),
        "Trainer arguments": trainer_arguments,
        "Trainer properties and methods": _public(trainer),
        "Callbacks": sorted(callbacks.__all__),
        "Loggers": sorted(loggers.__all__),
        "Utilities": sorted(utilities.__all__),
        "Trainer states": [n for n in _public(states) if n in ("RunningStage", "TrainerFn", "TrainerState",
                                                                  "TrainerStatus")],
        "LightningCLI": sorted({"LightningCLI", "SaveConfigCallback", "LightningArgumentParser"}
                               | {f"LightningCLI({a}=)" for a in cli_arguments}
                               | {f"LightningCLI.{n}" for n in _public(cli.LightningCLI)}),
        "Tuner": [f"Tuner.{n}" for n in _public(Tuner)],
    }


def table_rows(path: Path = TABLE) -> dict[str, dict[str, tuple[str, str]]]:
    """Section title -> {name: (status, note)} from the markdown tables under each `## <title>`."""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        heading = re.match(r"^## (.+)$", line)
        if heading:
            current = sections.setdefault(heading.group(1).strip(), {})
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if current is None or len(cells) < 3 or cells[0] in ("name", "") or set(cells[0]) <= {"-", ":"}:
            continue
        current[cells[0].strip("`")] = (cells[1], cells[2])
    return sections


def missing() -> dict[str, list[str]]:
    """Section -> Lightning names without a row."""
    rows = table_rows()
    return {section: [n for n in names if n not in rows.get(section, {})]
            for section, names in lightning_names().items()}


if __name__ == "__main__":
    if "--all" in sys.argv:
        for section, names in lightning_names().items():
            print(f"## {section}")
            for name in names:
                print(f"  {name}")
    else:
        gaps = {s: n for s, n in missing().items() if n}
        for section, names in gaps.items():
            print(f"## {section}: {', '.join(names)}")
        sys.exit(1 if gaps else 0)
