"""The rules of the fit loop (ember/schedule.py): when to validate, step and stop, as pure functions."""

from __future__ import annotations

import math

import pytest

from ember import schedule
from ember.state import FitState


@pytest.mark.parametrize("interval, batches, expected", [(0.25, 10, 2), (0.5, 10, 5), (1.0, 10, 10), (3, 10, 3),
                                                         (0.01, 10, 1), (1.0, math.inf, math.inf), (4, math.inf, 4)])
def test_validation_interval(interval, batches, expected):
    assert schedule.validation_interval(interval, batches) == expected


def due_positions(interval, batches, epochs, every_n_epoch):
    """(epoch, batches_done) after which validation runs, walking the state as the fit loop does."""
    state, due = FitState(), []
    for epoch in range(epochs):
        state.epoch = epoch
        for done in range(1, batches + 1):
            state.batches_done, state.total_batches = done, state.total_batches + 1
            if schedule.validation_due(state, interval, batches, every_n_epoch):
                due.append((epoch, done))
    return due


def test_validation_every_two_batches_and_at_the_end_of_an_epoch():
    assert due_positions(2, 5, 1, 1) == [(0, 2), (0, 4)]
    assert due_positions(5, 5, 2, 1) == [(0, 5), (1, 5)]
    assert due_positions(7, 5, 1, 1) == [(0, 5)]  # an interval longer than the epoch: once, at its end


def test_check_val_every_n_epoch_skips_epochs():
    assert due_positions(5, 5, 4, 2) == [(1, 5), (3, 5)]


def test_int_interval_without_check_val_every_n_epoch_counts_batches_across_epochs():
    # 3 epochs of 4 batches = 12 batches, every 4 -> 3 validations (counting per epoch would give 6 with 2)
    assert due_positions(4, 4, 3, None) == [(0, 4), (1, 4), (2, 4)]
    assert due_positions(3, 4, 3, None) == [(0, 3), (1, 2), (2, 1), (2, 4)]


def test_accumulation_window_ends_on_full_windows_and_on_the_last_batch():
    ends = [i for i in range(7) if schedule.accumulation_window_ends(i, 3, 7)]
    assert ends == [2, 5, 6]
    assert [i for i in range(4) if schedule.accumulation_window_ends(i, 3, math.inf)] == [2]


def test_stop_mid_epoch_respects_minimums():
    state = FitState(epoch=0, global_step=5, should_stop=True)
    assert schedule.stop_mid_epoch(state, max_steps=-1, min_epochs=1, min_steps=0)  # this epoch counts
    assert not schedule.stop_mid_epoch(state, max_steps=-1, min_epochs=2, min_steps=0)
    assert not schedule.stop_mid_epoch(state, max_steps=-1, min_epochs=0, min_steps=6)
    assert schedule.stop_mid_epoch(FitState(global_step=5), max_steps=5, min_epochs=0, min_steps=0)


def test_fit_done():
    assert schedule.fit_done(FitState(epoch=3), max_epochs=3, max_steps=-1, min_epochs=0, min_steps=0)
    assert not schedule.fit_done(FitState(epoch=2), max_epochs=3, max_steps=-1, min_epochs=0, min_steps=0)
    assert schedule.fit_done(FitState(epoch=1, should_stop=True), 3, -1, 0, 0)
    assert not schedule.fit_done(FitState(epoch=1, should_stop=True), 3, -1, 2, 0)
    assert schedule.fit_done(FitState(global_step=10), max_epochs=-1, max_steps=10, min_epochs=0, min_steps=0)


def test_fit_state_round_trips_and_ignores_unknown_fields():
    state = FitState(epoch=2, global_step=17, batches_done=3, validated_at=3, data_seed=9, should_stop=True)
    again = FitState()
    again.load_state_dict({**state.state_dict(), "from_a_newer_release": 1})
    assert again == state
    older = FitState()
    older.load_state_dict({"epoch": 1, "global_step": 4})  # an older checkpoint: the rest keep defaults
    assert (older.epoch, older.global_step, older.validated_at, older.should_stop) == (1, 4, -1, False)
