"""Timer: stop a fit after a duration, and measure how long each stage ran."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Mapping

from ember._logging import log
from ember.callbacks.base import Callback

STAGES = ("train", "sanity_check", "validate", "test", "predict")


def parse_max_time(value: Any) -> float | None:
    """Seconds from 'DD:HH:MM:SS', a dict such as {'hours': 1}, a timedelta, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return timedelta(**value).total_seconds()
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            d, h, m, s = map(int, parts)
            return timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()
    raise ValueError(f"Trainer(max_time={value!r}): expected 'DD:HH:MM:SS', a dict such as {{'hours': 1}}, or a "
                     "datetime.timedelta.")


class Timer(Callback):
    """Stop the fit once `duration` has passed (checked after each batch or each epoch), and time the stages.

    The training time of a fit resumed from a checkpoint counts from where the checkpoint left it.

    Args:
        duration: the training time allowed: 'DD:HH:MM:SS', a `timedelta`, a dict such as `{"hours": 1}`,
            or None to only measure.
        interval: check after every training batch ('step') or every training epoch ('epoch').
        verbose: say when the time limit stops the fit.

    Example:
        >>> timer = Timer(duration="00:12:00:00")
        >>> trainer = ember.Trainer(callbacks=[timer])
        >>> trainer.fit(model)
        >>> timer.time_elapsed("train"), timer.time_elapsed("validate")
    """

    def __init__(self, duration: str | timedelta | dict[str, int] | None = None, interval: str = "step",
                 verbose: bool = True) -> None:
        if interval not in ("step", "epoch"):
            raise ValueError(f"Timer(interval={interval!r}): expected 'step' or 'epoch'.")
        try:
            seconds = parse_max_time(duration)
        except (ValueError, TypeError) as err:
            raise ValueError(f"Timer(duration={duration!r}): expected 'DD:HH:MM:SS', a dict such as "
                             "{'hours': 1}, a datetime.timedelta, or None.") from err
        self._duration = seconds
        self._interval = interval
        self._verbose = verbose
        self._start_time: dict[str, float | None] = {stage: None for stage in STAGES}
        self._end_time: dict[str, float | None] = {stage: None for stage in STAGES}
        self._offset = 0.0

    def start_time(self, stage: str = "train") -> float | None:
        """When `stage` last started (`time.monotonic()`), or None."""
        return self._start_time[_stage(stage)]

    def end_time(self, stage: str = "train") -> float | None:
        return self._end_time[_stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds `stage` has run (so far, if it is running); training time includes a resumed run's."""
        stage = _stage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return (end if end is not None else time.monotonic()) - start + offset

    def time_remaining(self, stage: str = "train") -> float | None:
        """Seconds left of `duration` (None without a duration)."""
        if self._duration is None:
            return None
        return self._duration - self.time_elapsed(stage)

    def _start(self, stage: str) -> None:
        self._start_time[stage], self._end_time[stage] = time.monotonic(), None

    def _end(self, stage: str) -> None:
        self._end_time[stage] = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start("train")

    def on_train_end(self, trainer, pl_module) -> None:
        self._end("train")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start("sanity_check" if trainer.sanity_checking else "validate")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._end("sanity_check" if trainer.sanity_checking else "validate")

    def on_test_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_end(self, trainer, pl_module) -> None:
        self._end("test")

    def on_predict_start(self, trainer, pl_module) -> None:
        self._start("predict")

    def on_predict_end(self, trainer, pl_module) -> None:
        self._end("predict")

    def on_fit_start(self, trainer, pl_module) -> None:
        # a fit resumed after the time ran out trains no further
        if self._duration is not None and self.time_elapsed("train") >= self._duration:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check(trainer)

    def _check(self, trainer) -> None:
        # every rank stops together: the trainer OR-reduces should_stop across ranks
        if self.time_elapsed("train") >= self._duration and not trainer.should_stop:
            trainer.should_stop = True
            if self._verbose and trainer.is_global_zero:
                log.info("Time limit reached. Elapsed time is %s. Signaling Trainer to stop.",
                         timedelta(seconds=int(self.time_elapsed("train"))))

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict["time_elapsed"].get("train", 0.0))


def _stage(stage: Any) -> str:
    stage = getattr(stage, "value", stage)
    if stage not in STAGES:
        raise ValueError(f"Timer: unknown stage {stage!r}; expected one of {', '.join(STAGES)}.")
    return stage


__all__ = ["Timer"]
