"""What a run saves in a checkpoint and how `fit(ckpt_path=...)` resumes from it.

A checkpoint is a header (versions, `epoch`, `global_step`, weights and hyperparameters under Lightning's
keys) and a table of named parts (`Trainer._parts`), each saved and restored by one path
(`ember.checkpoint.gather` / `restore`). The format is documented in docs/checkpoint.md and checked
against this table by tests/test_checkpoint_format.py.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ember import __version__
from ember.checkpoint import (LIGHTNING_VERSION_KEY, LIGHTNING_VERSION_VALUE, CheckpointError, Part, gather,
                              load_checkpoint, load_weights, restore, save_checkpoint, unique_state_keys)
from ember.hparams import stored
from ember.plain import to_plain
from ember.seed import rng_states, set_rng_states

log = logging.getLogger("ember")

# Trainer arguments a checkpoint records, so that a resume says which value wins when they differ.
RECORDED_ARGUMENTS = ("max_epochs", "max_steps", "accumulate_grad_batches", "val_check_interval",
                      "check_val_every_n_epoch", "limit_train_batches")


class Checkpointing:
    """The Trainer's checkpoint methods (a part of `Trainer`, kept in this file so that saving and
    resuming read in one place)."""

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False,
                        storage_options: Any = None) -> None:
        """Write a checkpoint of the whole run (or of the weights only) atomically.

        Example:
            >>> trainer.save_checkpoint("runs/manual.ckpt")
        """
        model = self.lightning_module
        if model is None:
            raise RuntimeError("trainer.save_checkpoint() needs a model: call it during or after fit/validate/"
                               "test/predict.")
        if self.state == "fit":
            # the loggers get this step's values first, and write them: after a kill, what was logged is
            # never behind the checkpoint, and the checkpoint records where the loggers were
            self._flush_step_logs()
            if self.is_global_zero:
                for logger in self.loggers:
                    logger.save()
        checkpoint: dict[str, Any] = {
            "ember_version": __version__,
            LIGHTNING_VERSION_KEY: LIGHTNING_VERSION_VALUE,
            # Lightning's keys, for its loader and for inspection; a resume reads `loops`
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "state_dict": model.state_dict(),
            "hyper_parameters": stored(model.hparams),
        }
        if model._hparams_name:
            checkpoint["hparams_name"] = model._hparams_name
        if self.datamodule is not None and self.datamodule.hparams:
            checkpoint["datamodule_hyper_parameters"] = to_plain(stored(self.datamodule.hparams))
        if not weights_only and self.optimization is not None:
            checkpoint.update(gather(self._early_parts(), self.strategy.all_gather_object))
            checkpoint.update(gather(self._parts(), self.strategy.all_gather_object))
        self._callbacks.on_save_checkpoint(self, model, checkpoint)
        model.on_save_checkpoint(checkpoint)
        checkpoint["hyper_parameters"] = to_plain(checkpoint["hyper_parameters"])
        if self.is_global_zero:
            save_checkpoint(checkpoint, filepath)
        self.strategy.barrier("save_checkpoint")

    def _early_parts(self) -> dict[str, Part]:
        """The parts restored before setup: where the loop is, and which logger run it continues."""
        return {
            "loops": Part(self.fit_state.state_dict, self.fit_state.load_state_dict),
            "loggers": Part(self._logger_states, self._load_logger_identity, required=False),
        }

    def _parts(self) -> dict[str, Part]:
        """Every other stateful part of a run, restored after `configure_optimizers`, in this order.

        Adding state to checkpoints means adding a part here: `save_checkpoint` and `fit(ckpt_path=...)`
        both go through this table (docs/checkpoint.md lists it, checked by tests/test_checkpoint_format.py).
        """
        optimization, model = self.optimization, self.lightning_module
        return {
            "state_dict": Part(model.state_dict, lambda s: load_weights(model, s, source=f"the checkpoint "
                                                                                     f"{self.ckpt_path!r}")),
            "optimizers": Part(lambda: _numbered(optimization.optimizers),
                               lambda s: _load_numbered("optimizers", s, optimization.optimizers, self.ckpt_path)),
            "lr_schedulers": Part(lambda: _numbered([c.scheduler for c in optimization.lr_scheduler_configs]),
                                  lambda s: _load_numbered("lr_schedulers", s, [c.scheduler for c in
                                                           optimization.lr_scheduler_configs], self.ckpt_path)),
            "gradients": Part(optimization.gradients_state, optimization.load_gradients_state, required=False,
                              per_rank=True),
            "precision": Part(self._precision.state_dict, self._precision.load_state_dict, required=False),
            "callbacks": Part(self._callback_states, self._load_callback_states),
            "datamodule": Part(lambda: self.datamodule.state_dict() if self.datamodule is not None else {},
                               lambda s: self.datamodule.load_state_dict(s) if self.datamodule is not None else None,
                               required=False),
            "logs": Part(lambda: self.log_collector.state_dict(model),
                         lambda s: self.log_collector.load_state_dict(s, model), per_rank=True),
            "trainer": Part(lambda: {name: getattr(self, name) for name in RECORDED_ARGUMENTS},
                            self._compare_arguments, required=False),
            "rng": Part(rng_states, set_rng_states, per_rank=True),  # last: nothing after it may draw random numbers
        }

    def _callback_states(self) -> dict[str, Any]:
        callbacks = self._all_callbacks()
        keys = unique_state_keys([c.state_key for c in callbacks])
        return {key: c.state_dict() for key, c in zip(keys, callbacks)}

    def _load_callback_states(self, saved: Mapping[str, Any]) -> None:
        callbacks = list(self._callbacks)
        for key, callback in zip(unique_state_keys([c.state_key for c in callbacks]), callbacks):
            if key in saved:
                callback.load_state_dict(saved[key])

    def _logger_states(self) -> dict[str, Any]:
        """Each logger's identity, and where the loggers were: the newest step they had received rows for,
        and those rows (so a resume can tell what was logged before this checkpoint from what after)."""
        step, rows = self._feed.tail
        return {**{str(i): lg.state_dict() for i, lg in enumerate(self.loggers)},
                "position": {"step": step, "rows": [dict(r) for r in rows]}}

    def _load_logger_identity(self, saved: Mapping[str, Any]) -> None:
        for i, logger in enumerate(self.loggers):
            if str(i) in saved:
                logger.load_state_dict(saved[str(i)])
        position = saved.get("position")
        self._feed.tail = (position["step"], list(position["rows"])) if position else (-1, [])

    def _compare_arguments(self, saved: Mapping[str, Any]) -> None:
        """Say, one line each, where this Trainer's arguments differ from those of the checkpoint's run."""
        for name in RECORDED_ARGUMENTS:
            if name in saved and saved[name] != getattr(self, name):
                log.warning("Resume: %s was %r in the checkpoint's run and is %r in this Trainer; this Trainer's "
                            "value wins.", name, saved[name], getattr(self, name))
        for config in self.lr_scheduler_configs:
            total = getattr(config.scheduler, "total_steps", None)
            if isinstance(total, int) and self.estimated_stepping_batches not in (math.inf,) and \
                    total < self.estimated_stepping_batches:
                log.warning("Resume: %s was built for %d steps and this fit takes %d; it raises once its steps run "
                            "out. Build it from self.trainer.estimated_stepping_batches.",
                            type(config.scheduler).__name__, total, self.estimated_stepping_batches)

    def _read_checkpoint_for_fit(self, ckpt_path: Any) -> dict[str, Any] | None:
        if ckpt_path is None:
            return None
        if ckpt_path == "last":
            found = self._find_last_checkpoint()
            if found is None:
                log.warning("fit(ckpt_path='last'): no checkpoint of this run in %s; starting fresh.",
                            self._where_last_checkpoints_are())
                return None
            ckpt_path = found
        elif ckpt_path in ("best", "hpc"):
            raise ValueError(f"fit(ckpt_path={ckpt_path!r}) is not supported; pass 'last' or a path.")
        checkpoint = load_checkpoint(ckpt_path, map_location="cpu")
        if "loops" in checkpoint and "ember_version" not in checkpoint:
            raise CheckpointError(
                f"{str(ckpt_path)!r} was written by Lightning: its weights load into ember, but its loop state "
                "does not, so fit cannot resume from it exactly. Load the weights with "
                "Module.load_from_checkpoint(path) and call fit without ckpt_path.")
        if "loops" not in checkpoint:
            raise CheckpointError(
                f"{str(ckpt_path)!r} holds weights only (saved with save_weights_only=True or by another "
                "tool), so training cannot resume from it. Load the weights with "
                "Module.load_from_checkpoint(path) and call fit without ckpt_path.")
        self.ckpt_path = str(ckpt_path)
        return checkpoint

    def _last_checkpoint_folders(self) -> list[str]:
        """Where this run's checkpoints are: the folders given to its ModelCheckpoints, else the
        checkpoint folders of its logger's versions (newest first), else `<default_root_dir>/checkpoints`."""
        callbacks = self.checkpoint_callbacks
        given = [c.dirpath for c in callbacks if c.dirpath is not None]
        if given:
            return given
        if self.loggers:
            return [os.path.join(folder, "checkpoints") for folder in self.loggers[0].run_folders()]
        return [os.path.join(self.default_root_dir, "checkpoints")]

    def _where_last_checkpoints_are(self) -> str:
        folders = self._last_checkpoint_folders()
        if folders:
            return ", ".join(folders)
        logger = self.loggers[0]  # a logger with no version folder yet
        return os.path.join(getattr(logger, "root_dir", None) or logger.log_dir, "version_*", "checkpoints")

    def _find_last_checkpoint(self) -> str | None:
        """The newest `last*.ckpt` of this run, else its newest checkpoint; never one of another run."""
        folders = [Path(f) for f in self._last_checkpoint_folders() if Path(f).is_dir()]
        for pattern in ("last*.ckpt", "*.ckpt"):
            found = [p for folder in folders for p in folder.glob(pattern) if p.is_file()]
            if found:
                return str(max(found, key=lambda p: p.stat().st_mtime_ns))
        return None

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        model, state = self.lightning_module, self.fit_state
        model.on_load_checkpoint(checkpoint)
        self._callbacks.on_load_checkpoint(self, model, checkpoint)
        restore(self._parts(), checkpoint, f"The checkpoint {self.ckpt_path!r}", self.global_rank)
        into_epoch = state.batches_done > 0 and not state.epoch_ended
        if state.epoch_ended and state.epoch_finished:  # written at the end of an epoch: the next one is due
            state.next_epoch()
        elif into_epoch:
            self._data.check_resume(self.train_dataloader)
        step, rows = self._feed.tail
        if step < 0:  # a checkpoint of an older ember, or of a run that had logged nothing yet
            step, rows = state.global_step, []
        if self.is_global_zero:
            for logger in self.loggers:
                logger.resume_at(step, rows)
        where = f"epoch {state.epoch}, batch {state.batches_done}, global step {state.global_step}"
        if state.finished or (not into_epoch and self._fit_done()):
            log.warning("Restored %s (%s): that run had finished; there is nothing left to train. Raise "
                        "max_epochs / max_steps to train further.", self.ckpt_path, where)
        else:
            log.info("Restored %s: resuming at %s.", self.ckpt_path, where)
        state.finished = False

    def _load_weights_for_eval(self, ckpt_path: Any) -> None:
        if ckpt_path is None:
            return
        if ckpt_path == "best":
            callback = self.checkpoint_callback
            if callback is None:
                raise ValueError(f"{self.state}(ckpt_path='best') needs a ModelCheckpoint callback, and this "
                                 "Trainer has none. Pass a path, or add ModelCheckpoint(monitor=...) to callbacks.")
            if not callback.best_model_path:
                raise ValueError(f"{self.state}(ckpt_path='best'): the ModelCheckpoint has saved no best "
                                 "checkpoint yet (is `monitor` set and was fit run?). Pass ckpt_path='last' "
                                 "or a path.")
            ckpt_path = callback.best_model_path
        elif ckpt_path == "last":
            ckpt_path = self._find_last_checkpoint()
            if ckpt_path is None:
                raise ValueError(f"{self.state}(ckpt_path='last'): no checkpoint of this run in "
                                 f"{self._where_last_checkpoints_are()}.")
        checkpoint = load_checkpoint(ckpt_path, map_location="cpu")
        self.lightning_module.on_load_checkpoint(checkpoint)
        load_weights(self.lightning_module, checkpoint["state_dict"], source=f"the checkpoint {str(ckpt_path)!r}")
        self.ckpt_path = str(ckpt_path)

    def _stop_on_interrupt(self, signal_name: str) -> None:
        """After Ctrl-C / SIGTERM: save where the fit is, and say how to continue."""
        self.interrupted = True
        self.training = False
        callback = self.checkpoint_callback
        if callback is None or callback.dirpath is None:
            log.warning("Fit stopped on %s at epoch %d, step %d; no checkpoint was written (checkpointing is "
                        "off).", signal_name, self.current_epoch, self.global_step)
            return
        metrics = {**self.callback_metrics, "epoch": self.current_epoch, "step": self.global_step}
        path = callback.format_checkpoint_name(metrics, callback.CHECKPOINT_NAME_LAST)  # last.ckpt by default
        self.save_checkpoint(path)
        log.warning("Fit stopped on %s at epoch %d, step %d. Saved %s; continue with "
                    "trainer.fit(..., ckpt_path=%r).", signal_name, self.current_epoch, self.global_step, path,
                    path)


def _numbered(objects: list[Any]) -> dict[str, Any]:
    return {str(i): {"class": type(o).__name__, "state": o.state_dict()} for i, o in enumerate(objects)}


def _load_numbered(what: str, saved: Mapping[str, Any], objects: list[Any], ckpt_path: Any) -> None:
    classes = [saved[k]["class"] for k in sorted(saved, key=int)]
    mine = [type(o).__name__ for o in objects]
    if classes != mine:
        raise CheckpointError(f"The checkpoint {str(ckpt_path)!r} holds {what} {classes}, but "
                              f"configure_optimizers built {mine}. Resume with the same optimizers and "
                              "schedulers, or load only the weights with Module.load_from_checkpoint.")
    for i, obj in enumerate(objects):
        obj.load_state_dict(saved[str(i)]["state"])
