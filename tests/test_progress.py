"""ProgressBar: one line that fits the terminal, metrics dropped whole when they do not fit."""

from __future__ import annotations

import io
import os
import re

import pytest
import torch.nn.functional as F

from ember.callbacks import ProgressBar
import ember.callbacks.progress as progress

from conftest import Regressor, loader, quiet_trainer

METRICS = {f"metric_{i:02d}": 0.123456 + i for i in range(12)}
ITEMS = {f"{name}={value:.4g}" for name, value in METRICS.items()}
FIXED = re.compile(r"^Epoch [01]/2  \d/8")


class ManyMetrics(Regressor):
    """Logs twelve constant metrics to the progress bar each step, so every item's text is known."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        for name, value in METRICS.items():
            self.log(name, value, prog_bar=True)
        return F.mse_loss(self(x), y)


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, with a file descriptor the size lookup is patched for."""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 99


def drawn_lines(text: str) -> list[str]:
    """Every line as the terminal shows it: the pieces between carriage returns and newlines."""
    return [piece for piece in re.split(r"[\r\n]", text) if piece]


def fit_with(tmp_path, bar: ProgressBar) -> None:
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[bar], logger=False, enable_checkpointing=False)
    trainer.fit(ManyMetrics(), loader())


def assert_fits(lines: list[str], width: int) -> None:
    assert lines
    for line in lines:
        assert len(line) <= width, line
        assert FIXED.match(line), line
        # what follows the counts and timing is whole metric items, never one cut in the middle
        tokens = [t for t in line.split() if "=" in t]
        assert set(tokens) <= ITEMS, line


def test_terminal_line_fits_the_stream_width_and_keeps_whole_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(progress.os, "get_terminal_size",
                        lambda fd: os.terminal_size((40, 24)) if fd == 99 else os.terminal_size((200, 24)))
    stream = FakeTerminal()
    fit_with(tmp_path, ProgressBar(refresh_interval=0.0, stream=stream))
    lines = drawn_lines(stream.getvalue())
    assert_fits(lines, 40)
    assert all(len(line) <= 39 for line in lines)  # the last column is left empty: no auto-wrap
    assert stream.getvalue().count("\n") == 2  # one finished line per epoch, no wrapping


def test_width_argument_overrides_the_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = FakeTerminal()
    fit_with(tmp_path, ProgressBar(refresh_interval=0.0, stream=stream, width=40))
    assert_fits(drawn_lines(stream.getvalue()), 40)


def test_columns_variable_sets_the_terminal_width(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    stream = FakeTerminal()
    fit_with(tmp_path, ProgressBar(refresh_interval=0.0, stream=stream))
    lines = drawn_lines(stream.getvalue())
    assert_fits(lines, 79)
    # the first metrics, in the order logged, fill the width; the rest are left out
    assert all("metric_00=0.1235 metric_01=1.123" in line for line in lines)
    assert not any("metric_11" in line for line in lines)


def test_a_width_too_small_for_the_timing_keeps_epoch_and_step(tmp_path):
    stream = FakeTerminal()
    fit_with(tmp_path, ProgressBar(refresh_interval=0.0, stream=stream, width=16))
    lines = drawn_lines(stream.getvalue())
    assert_fits(lines, 16)
    assert lines[-1] == "Epoch 1/2  8/8"


class Shrinking(Regressor):
    """Logs a value whose text is five characters shorter on every other step."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log("m", 0.123456 if batch_idx % 2 == 0 else 1.0, prog_bar=True)
        return F.mse_loss(self(x), y)


def test_a_redraw_blanks_what_is_left_of_a_longer_line(tmp_path):
    stream = FakeTerminal()
    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[ProgressBar(refresh_interval=0.0, stream=stream,
                                                                           width=60)],
                            logger=False, enable_checkpointing=False)
    trainer.fit(Shrinking(), loader())
    redraws = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert any(line.endswith("m=1" + " " * 5) for line in redraws)  # "0.1235" was 5 characters longer
    for before, after in zip(redraws, redraws[1:]):
        assert len(after) >= len(before.rstrip()), (before, after)


def test_log_file_lines_are_whole_and_uncut(tmp_path):
    stream = io.StringIO()
    fit_with(tmp_path, ProgressBar(stream=stream, log_interval=0.0))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2 * 8 + 2  # a line per batch (log_interval=0) and per epoch end
    for line in lines:
        assert FIXED.match(line) and line == line.rstrip()
        assert {t for t in line.split() if "=" in t} == ITEMS


@pytest.mark.parametrize("width", [0, -3, 2.5, True])
def test_width_must_be_a_positive_int(width):
    with pytest.raises(ValueError, match="positive number of characters"):
        ProgressBar(width=width)
