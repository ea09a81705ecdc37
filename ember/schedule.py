"""When things happen in the fit loop: validate, step the optimizer, stop. Pure functions of the loop
state and the Trainer's arguments, so each rule is read (and tested) in one place.
"""

from __future__ import annotations

import math

from ember.state import FitState


def validation_interval(val_check_interval: int | float, num_training_batches: float) -> float:
    """Training batches between two validations (inf: once, when an epoch of unknown length runs out).

    An int is a number of batches; a float is a fraction of the epoch.

    Example:
        >>> validation_interval(0.25, 10)
        2
    """
    if isinstance(val_check_interval, int) and not isinstance(val_check_interval, bool):
        return val_check_interval
    if num_training_batches == math.inf:
        return math.inf
    return max(1, int(num_training_batches * val_check_interval))


def validation_due(state: FitState, interval: float, num_training_batches: float,
                   check_val_every_n_epoch: int | None) -> bool:
    """Whether validation runs after the batch that brought the state to `state.batches_done`.

    With `check_val_every_n_epoch=None` an int interval counts batches across epochs (the total
    trained since the fit began); otherwise it counts within the epoch, on the epochs that validate.
    """
    if interval == math.inf or state.batches_done == 0:
        return False
    if check_val_every_n_epoch is None:
        return state.total_batches % interval == 0
    if (state.epoch + 1) % check_val_every_n_epoch != 0:
        return False
    return state.batches_done % interval == 0 or (
        state.batches_done == num_training_batches and interval >= num_training_batches)


def accumulation_window_ends(batch_idx: int, accumulate_grad_batches: int, num_training_batches: float) -> bool:
    """Whether the optimizer steps after batch `batch_idx`: a full window, or the epoch's last batch."""
    return (batch_idx + 1) % accumulate_grad_batches == 0 or batch_idx + 1 == num_training_batches


def max_steps_reached(state: FitState, max_steps: int) -> bool:
    return max_steps != -1 and state.global_step >= max_steps


def min_reached(state: FitState, min_epochs: int, min_steps: int, epoch_done: bool = False) -> bool:
    """Whether min_epochs / min_steps allow the fit to stop (counting the current epoch if it is done)."""
    return state.epoch + int(epoch_done) >= min_epochs and state.global_step >= min_steps


def stop_mid_epoch(state: FitState, max_steps: int, min_epochs: int, min_steps: int) -> bool:
    """Whether the epoch ends before its last batch: max_steps reached, or a stop was asked for and the
    minimums allow it (the epoch now running counts as done for min_epochs)."""
    if max_steps_reached(state, max_steps):
        return True
    return state.should_stop and min_reached(state, min_epochs, min_steps, epoch_done=True)


def fit_done(state: FitState, max_epochs: int, max_steps: int, min_epochs: int, min_steps: int) -> bool:
    """Whether the fit ends before starting (or resuming) the epoch `state.epoch`."""
    if max_steps_reached(state, max_steps):
        return True
    if max_epochs != -1 and state.epoch >= max_epochs:
        return True
    return state.should_stop and min_reached(state, min_epochs, min_steps)


__all__ = ["validation_interval", "validation_due", "accumulation_window_ends", "max_steps_reached",
           "min_reached", "stop_mid_epoch", "fit_done"]
