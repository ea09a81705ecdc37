"""Where ember's messages go: the `ember` logger, shown on stderr unless the program configured logging.

Library code reports through `warnings` (problems the user should fix) and `logging.getLogger("ember")`
(what happened: a restored checkpoint, an interrupt). Without this, Python would drop INFO messages and
print WARNING ones bare; with it, they show with an `ember:` prefix. When the program (or Hydra)
configures the root logger, the messages go there instead, and into its log files.
"""

from __future__ import annotations

import logging


class _WhenRootIsSilent(logging.StreamHandler):
    """Writes to stderr only while the root logger has no handler (so a message is never shown twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def install() -> None:
    logger = logging.getLogger("ember")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, _WhenRootIsSilent) for h in logger.handlers):
        handler = _WhenRootIsSilent()
        handler.setFormatter(logging.Formatter("ember: %(message)s"))
        logger.addHandler(handler)
