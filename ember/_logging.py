"""The "ember" logger: where the library's informational messages go.

Messages a user turned on (`ModelCheckpoint(verbose=True)`, `EarlyStopping(verbose=True)`, the model
summary) are INFO records of `logging.getLogger("ember")`, not prints, so an application can route or
silence them like any other library's. An application that configured no logging still sees them on
stderr, as it saw the prints before (Lightning shows its INFO messages the same way):

    logging.getLogger("ember").setLevel(logging.WARNING)   # silence them
    logging.basicConfig(...)                                 # or route them with everything else
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("ember")


class _StderrUntilConfigured(logging.Handler):
    """Writes a record to stderr unless another handler on its way up the logger tree will show it."""

    def emit(self, record: logging.LogRecord) -> None:
        if self._someone_else_shows(record):
            return
        try:
            # sys.stderr looked up now, not at import, so that redirected or captured stderr gets the text
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def _someone_else_shows(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


if log.level == logging.NOTSET:
    log.setLevel(logging.INFO)  # the root logger's default (WARNING) would drop what verbose=True asked for
# by name: a reloaded module defines a new class, and the logger must still get one such handler only
if not any(type(handler).__name__ == "_StderrUntilConfigured" for handler in log.handlers):
    log.addHandler(_StderrUntilConfigured())

__all__ = ["log"]
