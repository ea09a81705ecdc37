"""ModelSummary: a table of the model's top-level layers and parameter counts at the start of fit."""

from __future__ import annotations

from torch import nn

from ember._logging import log
from ember.callbacks.base import Callback


class ModelSummary(Callback):
    """Show name, type and parameter count of each child module (to `max_depth` levels) when fit starts.

    The table is an INFO message of the "ember" logger (on stderr unless the application configured
    logging; `logging.getLogger("ember").setLevel(logging.WARNING)` hides it), as in Lightning.

    Args:
        max_depth: how many levels of submodules to list (1: the model's children).

    Example:
        >>> ember.Trainer(callbacks=[ModelSummary(max_depth=2)])
    """

    def __init__(self, max_depth: int = 1):
        self.max_depth = max_depth

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            log.info(summarize(pl_module, self.max_depth))


def summary_rows(model: nn.Module, max_depth: int = 1) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """The table's rows (index, name, type, params) and the totals' lines under it."""
    rows = [(str(i), name, type(module).__name__, _count(sum(p.numel() for p in module.parameters())))
            for i, (name, module) in enumerate((n, m) for n, m in model.named_modules()
                                               if n and n.count(".") < max_depth)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    totals = [f"{_count(trainable)} trainable params", f"{_count(total - trainable)} non-trainable params",
              f"{_count(total)} total params", f"{size_mb:.3f} MB (parameters)"]
    return rows, totals


def summarize(model: nn.Module, max_depth: int = 1) -> str:
    """The summary table as text."""
    body, totals = summary_rows(model, max_depth)
    rows = [("", "Name", "Type", "Params"), *body]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["-" * len(lines[0]), *totals]
    return "\n".join(lines)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)
