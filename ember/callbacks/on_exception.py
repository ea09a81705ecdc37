"""OnExceptionCheckpoint: save a checkpoint when a run fails, to look at it or resume from it."""

from __future__ import annotations

import os
from ember.callbacks.base import Callback


class OnExceptionCheckpoint(Callback):
    """Save `dirpath/filename.ckpt` when an exception ends a run; a run that ends without one removes it.

    The checkpoint is a full one (weights, optimizers, loop state), so `fit(ckpt_path=...)` resumes from it.

    Args:
        dirpath: the folder of the checkpoint (needed at once: an exception can come at any moment).
        filename: the file name without the extension.

    Example:
        >>> ember.Trainer(callbacks=[OnExceptionCheckpoint(dirpath="runs/crash")])
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike, filename: str = "on_exception") -> None:
        if not filename:
            raise ValueError("OnExceptionCheckpoint(filename=''): give a file name, e.g. 'on_exception'.")
        self.dirpath = dirpath
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._saved = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        trainer.save_checkpoint(self.ckpt_path)
        self._saved = True

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # ember's teardown also runs after a failure: only a run that ended cleanly removes the file
        if not getattr(self, "_saved", False) and trainer.is_global_zero and os.path.exists(self.ckpt_path):
            os.remove(self.ckpt_path)


__all__ = ["OnExceptionCheckpoint"]
