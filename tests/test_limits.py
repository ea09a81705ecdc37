"""fast_dev_run, limit_*_batches, val_check_interval, check_val_every_n_epoch, max/min steps and epochs."""

from __future__ import annotations

import pytest

import ember

from conftest import Regressor, loader, quiet_trainer


class Counter(ember.Callback):
    def __init__(self):
        self.train = self.val = self.test = self.predict = self.epochs = 0

    def on_train_batch_end(self, *args):
        self.train += 1

    def on_validation_batch_end(self, *args, **kwargs):
        self.val += 1

    def on_test_batch_end(self, *args, **kwargs):
        self.test += 1

    def on_predict_batch_end(self, *args, **kwargs):
        self.predict += 1

    def on_train_epoch_end(self, *args):
        self.epochs += 1


def run(tmp_path, **kwargs) -> tuple[Counter, ember.Trainer]:
    counter = Counter()
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    trainer = quiet_trainer(tmp_path, callbacks=[counter], **kwargs)
    model = Regressor()
    trainer.fit(model, loader(), loader())  # 8 training and 8 validation batches
    trainer.test(model, loader(), verbose=False)
    trainer.predict(model, loader())
    return counter, trainer


@pytest.mark.parametrize("fast_dev_run, expected", [(True, 1), (3, 3)])
def test_fast_dev_run_runs_n_batches_of_each_and_writes_nothing(tmp_path, fast_dev_run, expected):
    counter, trainer = run(tmp_path, fast_dev_run=fast_dev_run, logger=None, enable_checkpointing=None)
    assert (counter.train, counter.val, counter.test, counter.predict, counter.epochs) == (
        expected, expected, expected, expected, 1)
    assert trainer.global_step == expected
    assert list(tmp_path.iterdir()) == []


def test_limit_batches_as_counts_and_fractions(tmp_path):
    counter, _ = run(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=0.5,
                     limit_test_batches=2, limit_predict_batches=0.25)
    assert (counter.train, counter.val, counter.test, counter.predict) == (6, 8, 2, 2)


def test_val_check_interval_and_every_n_epochs(tmp_path):
    counter, _ = run(tmp_path, max_epochs=2, val_check_interval=0.25, limit_val_batches=1)
    assert counter.val == 8  # 4 validations an epoch
    counter, _ = run(tmp_path, max_epochs=4, check_val_every_n_epoch=2, limit_val_batches=1)
    assert counter.val == 2


def test_limit_val_batches_zero_disables_validation(tmp_path):
    counter, trainer = run(tmp_path, max_epochs=1, limit_val_batches=0)
    assert counter.val == 0 and "val_loss" not in trainer.callback_metrics


def test_max_steps_stops_mid_epoch(tmp_path):
    counter, trainer = run(tmp_path, max_steps=11)
    assert counter.train == 11 and trainer.global_step == 11 and trainer.current_epoch == 1


def test_sanity_check_runs_validation_batches_first_without_logging(tmp_path):
    counter, trainer = run(tmp_path, max_epochs=1, num_sanity_val_steps=2)
    assert counter.val == 2 + 8


@pytest.mark.parametrize("argument, value, message", [
    ("limit_train_batches", 1.5, "float above 1.0"),
    ("max_epochs", -5, "integer >= -1"),
    ("accumulate_grad_batches", 0, "integer >= 1"),
    ("gradient_clip_algorithm", "l2", "'norm' or 'value'"),
    ("max_time", "1 hour", "DD:HH:MM:SS"),
])
def test_bad_arguments_are_refused_at_construction(argument, value, message):
    with pytest.raises(ValueError, match=message):
        ember.Trainer(**{argument: value})
