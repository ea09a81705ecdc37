"""TensorBoardLogger: scalars, hyperparameters and the model graph in TensorBoard event files.

Files land in `<save_dir>/<name>/version_<N>/` (like CSVLogger), written by torch's own
`torch.utils.tensorboard.SummaryWriter` (`logger.experiment`). Open them with
`tensorboard --logdir <save_dir>`.

Hyperparameters are written as the hparams plugin's session-start record, without an experiment
record: TensorBoard then builds the hparams table from every run's hyperparameters and lists every
scalar the run logged as a metric column, showing its last value. (Lightning writes an experiment
record naming only `hp_metric`, which is why it logs a placeholder `hp_metric=-1`; ember needs neither.)

Resume: `state_dict()` holds the version, so a resumed fit writes into the same folder, and
`resume_at(step, rows)` opens the next writer with `purge_step=step`: TensorBoard's readers then drop
the events the interrupted run wrote at or after that step; the rows at `step` that the checkpoint saw
are written again, so each value is there once.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ember.plain import readable
from ember.loggers.base import FolderLogger, add_prefix, dump_hparams, scalar_params
from ember.loggers.csv import _write_atomic

_SESSION_STATUS = {"success": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "interrupted": "STATUS_ABORTED"}


class TensorBoardLogger(FolderLogger):
    """Log to TensorBoard event files in `<save_dir>/<name>/version_<N>[/<sub_dir>]`.

    Args:
        save_dir: the root folder.
        name: the experiment's folder under it.
        version: an int (folder `version_<int>`), a str (folder named so), or None for the next free int.
        log_graph: write the model graph at the start of fit, traced on `model.example_input_array`.
        default_hp_metric: accepted for Lightning code; ember writes no `hp_metric` placeholder, since
            the hparams table shows every logged scalar (log `hp_metric` yourself to have that column).
        prefix: prepended to every metric name as `<prefix>-<name>`.
        sub_dir: a folder under the version folder for the event files.
        **kwargs: passed to `SummaryWriter` (e.g. `flush_secs`, `max_queue`).

    Example:
        >>> trainer = ember.Trainer(logger=TensorBoardLogger("runs", name="mnist"))
    """

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, log_graph: bool = False, default_hp_metric: bool = True,
                 prefix: str = "", sub_dir: str | os.PathLike | None = None, **kwargs: Any):
        _import_summary_writer()  # fail here, not at the first step, when tensorboard is missing
        super().__init__(save_dir, name, version, sub_dir)
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._hparams: dict[str, Any] = {}
        self._writer: Any = None
        self._purge_step: int | None = None

    @property
    def experiment(self) -> Any:
        """The `torch.utils.tensorboard.SummaryWriter`, opened on first use."""
        if self._writer is None:
            SummaryWriter = _import_summary_writer()
            os.makedirs(self.log_dir, exist_ok=True)
            self._writer = SummaryWriter(self.log_dir, purge_step=self._purge_step, **self._kwargs)
            self._purge_step = None
        return self._writer

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        writer = self.experiment
        for key, value in add_prefix(metrics, self._prefix).items():
            writer.add_scalar(key, value, step)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Write `params` to the hparams plugin, and to `hparams.yaml` in log_dir as Lightning does."""
        import yaml
        from tensorboard.plugins.hparams import metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

        self._hparams.update(readable(params))
        os.makedirs(self.log_dir, exist_ok=True)
        _write_atomic(Path(self.log_dir) / "hparams.yaml", dump_hparams(self._hparams, yaml))
        start = SessionStartInfo(start_time_secs=time.time())
        for key, value in scalar_params(self._hparams).items():
            if isinstance(value, bool):
                start.hparams[key].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[key].number_value = value
            else:
                start.hparams[key].string_value = value
        self._write_hparams(metadata.SESSION_START_INFO_TAG, session_start_info=start)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Write `model`'s graph, traced on `input_array` (default: `model.example_input_array`).
        Does nothing unless the logger was made with `log_graph=True`, as in Lightning."""
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            raise ValueError(f"TensorBoardLogger(log_graph=True) traces the model on an example input, and "
                             f"{type(model).__name__} has none. Set `self.example_input_array = torch.randn(...)` "
                             "in its __init__, or call logger.log_graph(model, input_array).")
        parameter = next(iter(model.parameters()), None)
        if parameter is not None and hasattr(input_array, "to"):
            input_array = input_array.to(parameter.device)
        with warnings.catch_warnings():
            # add_graph traces with torch.jit.trace, which warns that it is deprecated: nothing a user can change
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=DeprecationWarning)
            self.experiment.add_graph(model, input_array)

    def save(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()  # events on disk keep up with checkpoints: a killed run loses only what came after

    def finalize(self, status: str) -> None:
        """Record how the run ended (the hparams table's status column) and close the event file."""
        if self._writer is None:
            return
        from tensorboard.plugins.hparams import api_pb2, metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

        end = SessionEndInfo(status=api_pb2.Status.Value(_SESSION_STATUS.get(status, "STATUS_UNKNOWN")),
                             end_time_secs=time.time())
        self._write_hparams(metadata.SESSION_END_INFO_TAG, session_end_info=end)
        self._writer.close()
        self._writer = None

    def resume_at(self, step: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        """The next writer purges what the interrupted run wrote at or after `step`; the `rows` the
        checkpoint saw at `step` are written again after the purge."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._purge_step = step
        for row in rows:
            self.log_metrics(row, step)

    def _write_hparams(self, tag: str, **plugin_data: Any) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

        content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **plugin_data).SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
        summary = Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])
        self.experiment._get_file_writer().add_summary(summary)


def _import_summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch.utils.tensorboard imports the tensorboard package
        raise ImportError("TensorBoardLogger needs tensorboard: pip install 'ember[tensorboard]'") from err
    return SummaryWriter
