"""What a Trainer is doing: the entry point that runs (`fn`), the loop inside it (`stage`) and how it went
(`status`), with Lightning's names (`lightning.pytorch.trainer.states`).

The enums are `str` subclasses, so `trainer.state.fn == "fit"` holds, and `TrainerState` itself compares
equal to the name of the entry point while that entry point runs: code written for ember, which compares
`trainer.state == "fit"`, keeps working next to code written for Lightning, which reads
`trainer.state.fn`, `.stage`, `.status` and `.finished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class LightningEnum(str, Enum):
    """A `str` enum whose members equal their value, in any letter case: `TrainerFn.FITTING == "FIT"`.

    Example:
        >>> TrainerFn.from_str("fit") is TrainerFn.FITTING
        True
    """

    @classmethod
    def from_str(cls, value: str, source: str = "key") -> "LightningEnum":
        """The member whose value (`source='value'`), name (`source='key'`) or either (`'any'`) is `value`."""
        for member in cls:
            by_key = source in ("key", "any") and member.name.lower() == value.lower()
            by_value = source in ("value", "any") and member.value.lower() == value.lower()
            if by_key or by_value:
                return member
        names = [m.name if source == "key" else m.value for m in cls]
        raise ValueError(f"{cls.__name__}.from_str({value!r}): expected one of {names}.")

    def __eq__(self, other: object) -> bool:
        other = other.value if isinstance(other, Enum) else other
        return isinstance(other, str) and self.value.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())

    def __str__(self) -> str:
        # as Lightning prints them: 'TrainerFn.FITTING'
        return f"{type(self).__name__}.{self.name}"


class TrainerFn(LightningEnum):
    """The entry point that runs: `trainer.fit` / `validate` / `test` / `predict`."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class TrainerStatus(LightningEnum):
    """How the last entry point went."""

    INITIALIZING = "initializing"  # no entry point has run yet
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM or an exception

    @property
    def stopped(self) -> bool:
        return self in (self.FINISHED, self.INTERRUPTED)


class RunningStage(LightningEnum):
    """The loop that runs inside an entry point (fit runs training, the sanity check and validation)."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (self.VALIDATING, self.TESTING, self.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str | None:
        """'train', 'val', 'test' or 'predict': the prefix of the dataloader hook this stage reads."""
        if self in (self.VALIDATING, self.SANITY_CHECKING):
            return "val"
        return self.value


@dataclass
class TrainerState:
    """`trainer.state`: a snapshot of what the Trainer is doing.

    Attributes:
        status: INITIALIZING before the first entry point, RUNNING inside one, then FINISHED (or
            INTERRUPTED after Ctrl-C / SIGTERM / an exception).
        fn: the entry point running or last run (None before the first).
        stage: the loop running now (None outside an entry point).

    It equals a `str` when that is the name of the entry point now running: `trainer.state == "fit"`
    is True inside `fit` only. Lightning's `TrainerState` never equals a `str`, so code written for
    Lightning, which reads `.fn`, is not affected.

    Example:
        >>> trainer.fit(model, loader)
        >>> trainer.state.fn, trainer.state.finished
        (<TrainerFn.FITTING: 'fit'>, True)
    """

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status.stopped

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str) and not isinstance(other, Enum):
            return self.status == TrainerStatus.RUNNING and self.fn is not None and self.fn.value == other
        if isinstance(other, TrainerState):
            return (self.status, self.fn, self.stage) == (other.status, other.fn, other.stage)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (mutable, compared by value)

    def __str__(self) -> str:
        # the entry point's name, so that messages written as f"{trainer.state}(ckpt_path=...)" read well
        return self.fn.value if self.fn is not None else repr(self)


__all__ = ["LightningEnum", "RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]
