"""docs/lightning-compat.md: every public name of Lightning's API has a row (checked against the installed
Lightning), and every row is true of ember: a supported name exists where the row says, a not-supported
name raises an error that names its row."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import ember
import ember.lightning as pl
from ember.lightning.not_supported import MODULE_HOOKS, NotSupportedError
from lightning_names import TABLE, lightning_names, table_rows

STATUSES = ("supported", "difference", "not supported")
ROWS = table_rows()
HERE = Path(__file__).resolve().parent
# supported rows that no behaviour test spells out (the hook-order tests record hooks by name in a loop),
# with the test that exercises each; every other supported row is named in some behaviour test
_EVAL_HOOKS = ["on_test_batch_start", "on_test_end", "on_test_epoch_end", "on_test_epoch_start",
               "on_predict_batch_start", "on_predict_end", "on_predict_epoch_end", "on_predict_epoch_start"]
EXERCISED_BY = {"LightningModule": {
    **dict.fromkeys(["on_before_backward", "on_validation_batch_start", "on_validation_epoch_end"],
                    "test_hook_order.py::test_the_order_is_lightnings"),
    **dict.fromkeys(_EVAL_HOOKS, "test_lightning_rows.py::test_test_and_predict_call_the_hooks_in_lightnings_order"),
}}
NOT_BEHAVIOUR_TESTS = {"test_lightning_compat_table.py", "lightning_names.py", "test_lightning_names.py"}


def rows(section: str, *statuses: str) -> list[str]:
    return [name for name, (status, _) in ROWS[section].items() if status in statuses]


def test_every_lightning_name_has_a_row_and_every_row_a_lightning_name():
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("jsonargparse")  # Lightning's cli module needs it
    names = lightning_names()
    assert {s: [n for n in found if n not in ROWS.get(s, {})] for s, found in names.items()} == \
        {s: [] for s in names}
    assert {s: sorted(set(ROWS[s]) - set(found)) for s, found in names.items()} == {s: [] for s in names}


def test_rows_have_a_known_status_and_a_note_when_not_plainly_supported():
    for section, found in ROWS.items():
        for name, (status, note) in found.items():
            assert status in STATUSES, (section, name, status)
            assert status == "supported" or note, (section, name)


def test_the_totals_line_counts_the_rows():
    counts = {status: sum(1 for found in ROWS.values() for s, _ in found.values() if s == status)
              for status in STATUSES}
    line = f"Totals: {counts['supported']} supported, {counts['difference']} with a difference, " \
           f"{counts['not supported']} not supported ({sum(counts.values())} names)."
    assert line in TABLE.read_text()


def test_module_rows_are_true():
    for name in rows("LightningModule", "supported", "difference"):
        if name.endswith("_dataloader"):
            continue  # hooks the user defines; the Trainer calls them
        assert hasattr(ember.Module, name) or name in vars(ember.Module()), name
    for name in rows("LightningModule", "not supported"):
        assert not hasattr(ember.Module, name), f"{name} exists now: update its row"
        if name in MODULE_HOOKS:
            with pytest.raises(TypeError, match=f"See the row 'LightningModule.{name}'"):
                type("Uses", (ember.Module,), {name: lambda self, *args: None})


def test_datamodule_rows_are_true():
    for name in rows("LightningDataModule", "supported", "difference"):
        assert hasattr(ember.DataModule, name), name
    for name in rows("LightningDataModule", "not supported"):
        with pytest.raises(TypeError, match=f"See the row 'LightningDataModule.{name}'"):
            type("Uses", (ember.DataModule,), {name: lambda self, *args: None})


def test_trainer_rows_are_true(tmp_path):
    params = inspect.signature(ember.Trainer.__init__).parameters
    for name in rows("Trainer arguments", "supported", "difference"):
        assert name in params, name
    for name in rows("Trainer arguments", "not supported"):
        assert name not in params, f"Trainer({name}=) exists now: update its row"
        with pytest.raises(TypeError, match=f"See the row '{name}'"):
            ember.Trainer(**{name: "x"})
    trainer = ember.Trainer(logger=False, default_root_dir=tmp_path)
    for name in rows("Trainer properties and methods", "supported", "difference"):
        assert hasattr(trainer, name), name
    for name in rows("Trainer properties and methods", "not supported"):
        with pytest.raises(AttributeError, match=f"See the row '{name}'"):
            getattr(trainer, name)


@pytest.mark.parametrize("section, module", [("Callbacks", "ember.lightning.callbacks"),
                                             ("Loggers", "ember.lightning.loggers"),
                                             ("Utilities", "ember.lightning.utilities"),
                                             ("Trainer states", "ember.lightning.trainer.states"),
                                             ("lightning.pytorch", "ember.lightning")])
def test_import_rows_are_true(section, module):
    found = importlib.import_module(module)
    for name in rows(section, "supported", "difference"):
        assert getattr(found, name) is not None, name
    for name in rows(section, "not supported"):
        with pytest.raises(NotSupportedError, match=re.escape(f"See the row {name!r}")):
            getattr(found, name)


def test_cli_and_tuner_rows_are_true():
    pytest.importorskip("jsonargparse")
    from ember.lightning import cli

    params = inspect.signature(cli.LightningCLI.__init__).parameters
    for name in rows("LightningCLI", "supported", "difference"):
        argument = re.fullmatch(r"LightningCLI\((\w+)=\)", name)
        if argument:
            assert argument.group(1) in params, name
        elif name.startswith("LightningCLI."):
            assert hasattr(cli.LightningCLI, name.partition(".")[2]), name
        else:
            assert getattr(cli, name) is not None, name
    assert not rows("LightningCLI", "not supported") and not rows("Tuner", "not supported")
    for name in rows("Tuner", "supported", "difference"):
        assert hasattr(pl.tuner.Tuner, name.partition(".")[2]), name


def test_every_supported_row_is_exercised_by_a_behaviour_test():
    texts = [p.read_text() for p in HERE.glob("*.py") if p.name not in NOT_BEHAVIOUR_TESTS]
    unexercised = []
    for section, found in ROWS.items():
        for name, (status, _) in found.items():
            if status != "supported":
                continue
            mapped = EXERCISED_BY.get(section, {}).get(name)
            if mapped:
                file, test = mapped.split("::")
                assert re.search(rf"^def {test}\(", (HERE / file).read_text(), flags=re.M), mapped
                continue
            bare = re.sub(r"^LightningCLI[.(]|=\)$", "", name)  # 'LightningCLI(run=)' -> 'run'
            spelled = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(bare)}(?![A-Za-z0-9_])")
            if not any(spelled.search(text) for text in texts):
                unexercised.append(f"{section}: {name}")
    assert unexercised == []
