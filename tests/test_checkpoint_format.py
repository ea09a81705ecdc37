"""docs/checkpoint.md says what a checkpoint holds: checked here against the code and a real checkpoint."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from ember.callbacks import ModelCheckpoint
from ember.state import FitState

from conftest import Regressor, loader, quiet_trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "checkpoint.md"


def table(heading: str) -> list[list[str]]:
    """The rows of the first table after `heading`, cells stripped of backticks."""
    text = DOC.read_text().split(heading, 1)[1]
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            if not set(cells[0]) <= {"-"}:
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def names(cell: str) -> list[str]:
    return [n.strip().strip("`") for n in re.split(r"`?,\s*`?", cell)]


def test_the_documented_parts_are_the_code_s_in_its_order_and_requirement(tmp_path):
    trainer = quiet_trainer(tmp_path, max_steps=1, logger=False)
    trainer.fit(Regressor(), loader())
    parts = {**trainer._early_parts(), **trainer._parts()}
    documented = table("## What a checkpoint holds\n\nThe header")  # the header table comes first
    rows = table("anything is changed):")
    assert [r[0] for r in rows] == list(parts)
    assert {r[0]: r[1] == "yes" for r in rows} == {name: part.required for name, part in parts.items()}
    assert documented  # the header table is there too


def test_a_real_checkpoint_holds_the_documented_keys_and_loads_safely(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[checkpoint])
    trainer.fit(Regressor(), loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    header = [n for row in table("## What a checkpoint holds\n\nThe header") for n in names(row[0])]
    parts = [row[0] for row in table("anything is changed):")]
    optional_header = {"hparams_name", "datamodule_hyper_parameters"}
    assert set(saved) == (set(header) - optional_header) | set(parts)


def test_the_documented_loop_state_fields_are_the_dataclass_s():
    rows = table("## The loop state")
    assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(FitState)]
