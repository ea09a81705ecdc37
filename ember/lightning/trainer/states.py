"""`lightning.pytorch.trainer.states`: what `trainer.state` holds."""

from ember.trainer_state import LightningEnum, RunningStage, TrainerFn, TrainerState, TrainerStatus

__all__ = ["LightningEnum", "RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]
