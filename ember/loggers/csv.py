"""CSVLogger: `metrics.csv` and `hparams.yaml` in `save_dir/name/version_N/`, with no dependency."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ember.plain import readable
from ember.loggers.base import FolderLogger, add_prefix, dump_hparams


class CSVLogger(FolderLogger):
    """Write metrics to `<save_dir>/<name>/version_<N>/metrics.csv` (one row per logged step).

    Args:
        save_dir: the root folder.
        name: the experiment's folder under it.
        version: an int (folder `version_<int>`), a str (folder named so), or None for the next free int.
        flush_logs_every_n_steps: rows are kept in memory and written every this many logged steps.

    Example:
        >>> trainer = ember.Trainer(logger=CSVLogger("runs", name="mnist"))
    """

    def __init__(self, save_dir: str | os.PathLike = ".", name: str = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100):
        super().__init__(save_dir, name, version)
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._rows: list[dict[str, Any]] = []
        self._keys: list[str] = []
        self._pending_since_flush = 0
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> "CSVLogger":
        return self

    @property
    def metrics_file_path(self) -> str:
        return os.path.join(self.log_dir, "metrics.csv")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = add_prefix(metrics, self._prefix)
        row["step"] = step if step is not None else len(self._rows)
        self._rows.append(row)
        self._pending_since_flush += 1
        if self._pending_since_flush >= self._flush_every:
            self.save()

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        import yaml

        self._hparams.update(readable(params))
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        _write_atomic(Path(self.log_dir) / "hparams.yaml", dump_hparams(self._hparams, yaml))

    def save(self) -> None:
        """Append the buffered rows to metrics.csv (rewritten whole when new columns appear)."""
        if not self._rows:
            return
        path = Path(self.metrics_file_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        existing: list[dict[str, Any]] = []
        if path.exists() and not self._keys:
            existing, self._keys = _read_rows(path)
        new_keys = [k for row in self._rows for k in row if k not in self._keys]
        if new_keys or not path.exists():
            for key in new_keys:
                if key not in self._keys:
                    self._keys.append(key)
            if not existing and path.exists():
                existing, _ = _read_rows(path)
            self._keys = ["step"] + [k for k in self._keys if k != "step"]
            _rewrite(path, self._keys, existing + self._rows)
        else:
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._keys).writerows(self._rows)
        self._rows = []
        self._pending_since_flush = 0

    def finalize(self, status: str) -> None:
        self.save()

    def resume_at(self, step: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """Keep the rows before `step`, then the `rows` the checkpoint saw at `step`; drop the rest (the
        resumed run logs it again)."""
        self.save()
        path = Path(self.metrics_file_path)
        if path.exists():
            written, keys = _read_rows(path)
            kept = [row for row in written if row.get("step") in (None, "") or int(row["step"]) < step]
            if len(kept) != len(written):
                _rewrite(path, keys, kept)
            self._keys = keys
        for row in rows:
            self.log_metrics(row, step)
        self.save()


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def _rewrite(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
