"""What ember tells the user goes through `logging` (status) and `warnings` (problems the caller can fix),
shown on stderr while the application has configured no logging, and through its handlers once it has."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ember

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_seed_message_is_logged_at_info(caplog):
    with caplog.at_level(logging.INFO):
        assert ember.seed_everything(3) == 3
        ember.seed_everything(4, verbose=False)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [("ember.seed", "INFO", "Seed set to 3")]


def test_without_logging_configured_messages_show_on_stderr_and_stdout_stays_clean():
    done = run_python("""
        import ember
        ember.seed_everything(3)
    """)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "Seed set to 3\n")


def test_logging_configured_after_import_takes_the_messages_once():
    done = run_python("""
        import logging, sys
        import ember
        logging.basicConfig(stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
        ember.seed_everything(3)
        logging.getLogger("ember").setLevel(logging.WARNING)
        ember.seed_everything(4)
    """)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("ember.seed INFO Seed set to 3\n", "")
