"""GradientAccumulationScheduler: accumulate gradients over a number of batches that changes by epoch."""

from __future__ import annotations

from typing import Mapping

from ember.callbacks.base import Callback


class GradientAccumulationScheduler(Callback):
    """Set `trainer.accumulate_grad_batches` at the start of each epoch from a schedule.

    Args:
        scheduling: epoch (0-based) -> batches to accumulate from that epoch on. Epochs before the first
            key accumulate 1 batch.

    Example:
        >>> # 8 batches per step in epochs 0-3, 4 in epochs 4-9, then 1
        >>> GradientAccumulationScheduler(scheduling={0: 8, 4: 4, 10: 1})
    """

    def __init__(self, scheduling: Mapping[int, int]) -> None:
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler(scheduling={}): give at least one epoch -> batches "
                            "item, e.g. {0: 4}.")
        for epoch, factor in scheduling.items():
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
                raise IndexError(f"GradientAccumulationScheduler(scheduling={dict(scheduling)!r}): epoch {epoch!r} "
                                 "is not an int >= 0 (epochs count from 0).")
            if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
                raise TypeError(f"GradientAccumulationScheduler(scheduling={dict(scheduling)!r}): epoch {epoch} "
                                f"accumulates {factor!r} batches; expected an int >= 1.")
        self.scheduling = dict(sorted(scheduling.items()))
        if min(self.scheduling) > 0:
            self.scheduling = {0: 1, **self.scheduling}
        self.epochs = sorted(self.scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        """Whether any epoch accumulates more than one batch."""
        return any(factor > 1 for factor in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The batches to accumulate in `epoch`."""
        return self.scheduling[max(e for e in self.epochs if e <= epoch)]

    def on_train_start(self, trainer, pl_module) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "GradientAccumulationScheduler sets trainer.accumulate_grad_batches, which only automatic "
                f"optimization reads; {type(pl_module).__name__} sets automatic_optimization = False. Accumulate "
                "in training_step yourself (step the optimizer every N batches), or remove the callback.")
        if trainer.accumulate_grad_batches != 1 and trainer.accumulate_grad_batches != \
                self.get_accumulate_grad_batches(trainer.current_epoch):
            raise ValueError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) and a "
                "GradientAccumulationScheduler were both given; the schedule sets the value every epoch. Remove "
                "the Trainer argument, or the callback.")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # a resumed fit takes the scheduled value before the checkpoint's arguments are compared with the
        # Trainer's, so the comparison does not report the schedule as a change
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)


__all__ = ["GradientAccumulationScheduler"]
