"""TensorBoardLogger, read back with TensorBoard's own EventAccumulator."""

import csv
import functools

import numpy as np
import pytest
import yaml

import ember
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.loggers import CSVLogger, TensorBoardLogger

from logger_helpers import Crash, CrashAt, TinyWithExampleInput
from logger_helpers import fit as fit_tiny

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, metadata  # noqa: E402

fit = functools.partial(fit_tiny, module=TinyWithExampleInput)  # the graph is traced on its example input


def read_events(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_scalars_and_hparams_read_back_as_logged(tmp_path):
    csv_logger = CSVLogger(tmp_path, name="csv")
    tb = TensorBoardLogger(tmp_path, name="tb")
    fit([csv_logger, tb], val=True, max_epochs=2, default_root_dir=tmp_path)

    assert tb.log_dir == str(tmp_path / "tb" / "version_0")
    events = read_events(tb.log_dir)
    with open(csv_logger.metrics_file_path) as f:
        rows = list(csv.DictReader(f))
    logged = {key for row in rows for key, value in row.items() if value and key != "step"}
    assert set(events.Tags()["scalars"]) == logged == {"train_loss", "val_loss", "epoch"}
    for tag in logged:  # TensorBoard stores float32
        expected = [(int(r["step"]), float(np.float32(r[tag]))) for r in rows if r[tag]]
        assert scalars(events, tag) == expected
    assert [step for step, _ in scalars(events, "train_loss")] == list(range(16))
    assert [step for step, _ in scalars(events, "val_loss")] == [7, 15]

    hparams = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(hparams[metadata.SESSION_START_INFO_TAG])
    assert {k: v.number_value for k, v in start.hparams.items()} == {"lr": 0.1, "sizes/hidden": 2.0}
    assert yaml.safe_load((tmp_path / "tb" / "version_0" / "hparams.yaml").read_text()) == {"lr": 0.1,
                                                                                          "sizes": {"hidden": 2}}
    end = metadata.parse_session_end_info_plugin_data(hparams[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS

    assert TensorBoardLogger(tmp_path, name="tb").version == 1  # the next run gets the next folder


def test_resume_continues_the_version_and_purges_steps_logged_after_the_checkpoint(tmp_path):
    reference = TensorBoardLogger(tmp_path, name="reference")
    fit(reference, max_steps=10)

    first = TensorBoardLogger(tmp_path, name="tb")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    with pytest.raises(Crash):
        fit(first, [checkpoint, CrashAt(6)], max_steps=10)  # steps 0-5 logged, last.ckpt at step 4
    assert [s for s, _ in scalars(read_events(first.log_dir), "train_loss")] == list(range(6))

    second = TensorBoardLogger(tmp_path, name="tb")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    fit(second, [checkpoint], max_steps=10, ckpt_path=tmp_path / "ckpt" / "last.ckpt")

    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["version_0"]
    assert second.log_dir == first.log_dir
    events = read_events(second.log_dir)
    assert scalars(events, "train_loss") == scalars(read_events(reference.log_dir), "train_loss")
    assert [s for s, _ in scalars(events, "train_loss")] == list(range(10))


def test_failed_run_is_recorded_in_the_hparams_table(tmp_path):
    tb = TensorBoardLogger(tmp_path)
    with pytest.raises(Crash):
        fit(tb, [CrashAt(2)], max_steps=4, enable_checkpointing=False)
    content = read_events(tb.log_dir).PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_END_INFO_TAG]
    assert metadata.parse_session_end_info_plugin_data(content).status == api_pb2.STATUS_FAILURE


def test_prefix_sub_dir_and_named_version(tmp_path):
    tb = TensorBoardLogger(tmp_path, name="exp", version="run-a", prefix="train", sub_dir="inner")
    tb.log_metrics({"loss": 0.5, "acc": 1.0}, step=3)
    tb.finalize("success")
    assert tb.log_dir == str(tmp_path / "exp" / "run-a" / "inner")
    events = read_events(tb.log_dir)
    assert scalars(events, "train-loss") == [(3, 0.5)]
    assert scalars(events, "train-acc") == [(3, 1.0)]


class LogGraph(ember.Callback):
    """What the Trainer does at fit start (Lightning calls logger.log_graph(model) there)."""

    def on_fit_start(self, trainer, pl_module):
        trainer.logger.log_graph(pl_module)


def test_log_graph(tmp_path):
    tb = TensorBoardLogger(tmp_path, log_graph=True)
    fit(tb, [LogGraph()], max_steps=1, enable_checkpointing=False)  # traced on example_input_array
    graph = read_events(tb.log_dir).Graph()
    assert any(node.op == "aten::linear" for node in graph.node)

    model = TinyWithExampleInput()
    del model.example_input_array
    with pytest.raises(ValueError, match="example_input_array"):
        TensorBoardLogger(tmp_path, log_graph=True).log_graph(model)
