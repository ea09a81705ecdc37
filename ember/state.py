"""The loop state: where a fit is, held in one object and saved whole in every checkpoint.

Every counter the fit loop keeps lives here and nowhere else. Callbacks and the Module read it through
`trainer.fit_state` (and the Lightning-named shortcuts `trainer.current_epoch`, `trainer.global_step`,
`trainer.should_stop`); a checkpoint stores `FitState.state_dict()` under its `loops` key, and a resume
puts it back with `load_state_dict`, so nothing is reconstructed from other counters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class FitState:
    """Where a fit is.

    Attributes:
        epoch: the epoch being trained (0-based); it advances when an epoch's last batch is done and its
            end-of-epoch hooks have run.
        global_step: optimizer steps taken since the fit began.
        batches_done: training batches of the current epoch already trained (0 at an epoch's start).
        epoch_finished: the current epoch's batches are all done (its end hooks may still be running).
        epoch_ended: the `on_train_epoch_end` of EarlyStopping and ModelCheckpoint has begun (after the
            other callbacks' and the module's hook, the epoch's logged values and the epoch schedulers), so
            a checkpoint written there resumes after the epoch's end instead of running it again.
        validated_at: `batches_done` when validation last ran in this epoch (-1: not yet this epoch).
            It is set when that validation's metrics are complete, before `on_validation_end`, so a
            checkpoint written there resumes after the validation instead of running it twice.
        total_batches: training batches trained since the fit began (counts across epochs).
        data_seed: the seed of the training data order (the order of epoch e is a function of
            (data_seed, e)).
        should_stop: a callback or the loop asked the fit to stop.
        stepped: the training batch now running took an optimizer step (read by callbacks in
            `on_train_batch_end`).
        finished: the fit ended (max_epochs, max_steps, max_time or a stop); a resume from a checkpoint
            written then trains no further.
        validation_log_steps: per validation dataloader, the logger step of the next validation batch's
            `on_step=True` values (validation batches counted across the fit, as Lightning counts them).
    """

    epoch: int = 0
    global_step: int = 0
    batches_done: int = 0
    epoch_finished: bool = False
    epoch_ended: bool = False
    validated_at: int = -1
    total_batches: int = 0
    data_seed: int | None = 0
    should_stop: bool = False
    stepped: bool = False
    finished: bool = False
    validation_log_steps: list[int] = dataclasses.field(default_factory=list)

    def start_epoch(self) -> None:
        """Reset the per-epoch counters (the epoch number is advanced by `next_epoch`)."""
        self.batches_done, self.epoch_finished, self.epoch_ended, self.validated_at = 0, False, False, -1

    def next_epoch(self) -> None:
        self.epoch += 1
        self.start_epoch()

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back a saved state; fields a checkpoint of an older ember lacks keep their defaults."""
        known = {f.name for f in dataclasses.fields(self)}
        for name, value in state.items():
            if name in known:
                setattr(self, name, value)


__all__ = ["FitState"]
