"""ModelCheckpoint: what each file holds, resume, missing keys, templates, names, state keys, messages."""

from __future__ import annotations

import logging


# --- messages go through logging ------------------------------------------------------------------------

def test_ember_messages_reach_stderr_when_the_application_configured_no_logging(monkeypatch, capsys):
    from ember._logging import log

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    log.info("shown once")
    logging.getLogger().addHandler(logging.NullHandler())  # an application's handler: it decides
    log.info("not shown by ember")
    assert capsys.readouterr().err == "shown once\n"
