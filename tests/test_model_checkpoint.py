"""ModelCheckpoint: what each file holds, resume, missing keys, templates, names, state keys, messages."""

from __future__ import annotations

import logging
import os
import tempfile

import torch

from ember.checkpoint import save_checkpoint


def files(folder) -> list[str]:
    return sorted(os.listdir(folder))


# --- temp files of a killed write ---------------------------------------------------------------------

def test_the_next_save_of_a_file_removes_the_temp_files_a_killed_write_of_it_left(tmp_path):
    target = tmp_path / "last.ckpt"
    fd, killed = tempfile.mkstemp(prefix=".last.ckpt.", suffix=".tmp", dir=tmp_path)  # as save_checkpoint names it
    os.write(fd, b"half a checkpoint")
    os.close(fd)
    others = [".epoch=1.ckpt.abcd1234.tmp",  # another file's write: not this save's business
              ".last.ckpt.tmp", ".last.ckpt.abc.tmp", "last.ckpt.abcd1234.tmp", "notes.tmp"]  # not mkstemp's names
    for name in others:
        (tmp_path / name).write_bytes(b"")
    save_checkpoint({"state_dict": {"w": torch.ones(1)}}, target)
    assert files(tmp_path) == sorted(others + ["last.ckpt"])
    assert not os.path.exists(killed)


# --- messages go through logging ------------------------------------------------------------------------

def test_ember_messages_reach_stderr_when_the_application_configured_no_logging(monkeypatch, capsys):
    from ember._logging import log

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    log.info("shown once")
    logging.getLogger().addHandler(logging.NullHandler())  # an application's handler: it decides
    log.info("not shown by ember")
    assert capsys.readouterr().err == "shown once\n"
