"""`lightning.pytorch.utilities.exceptions`.

ember reports a misconfiguration with `ValueError` or `TypeError` (what was given, what was expected,
the fix), never with this class: `except MisconfigurationException` does not catch ember's errors; catch
`ValueError` / `TypeError` instead. The class is here so that code raising it keeps working.
"""


class MisconfigurationException(Exception):
    """Raised by user code written for Lightning; ember itself raises ValueError / TypeError."""


__all__ = ["MisconfigurationException"]
