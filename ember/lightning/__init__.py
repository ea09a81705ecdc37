"""Lightning's names on ember: `import ember.lightning as pl` in place of `import pytorch_lightning as pl`.

The classes are ember's own. `Trainer` here also accepts the Lightning 1.x arguments that the 2.x API
removed (`gpus=`, `accelerator='dp'|'ddp'|'ddp_spawn'`, `resume_from_checkpoint=`, `auto_lr_find=`),
translates them, and says once what the 2.x form is.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ember.callbacks import Callback
from ember.data import DataModule as LightningDataModule
from ember.module import Module as LightningModule
from ember.seed import seed_everything
from ember.trainer import Trainer as _EmberTrainer
from ember.lightning import callbacks, core, loggers, strategies, trainer, tuner, utilities


class LightningDeprecationWarning(FutureWarning):
    """A Lightning 1.x argument was translated to its 2.x form."""


class Trainer(_EmberTrainer):
    """ember's Trainer with Lightning's defaults (`logger=True` is a TensorBoardLogger under
    `lightning_logs/`, or a CSVLogger there without tensorboard), also taking the Lightning 1.x arguments
    that old code passes."""

    _default_logger = "lightning"

    def __init__(self, *args: Any, gpus: Any = None, resume_from_checkpoint: Any = None,
                 auto_lr_find: Any = None, auto_scale_batch_size: Any = None, **kwargs: Any) -> None:
        _drop_lightning_defaults(kwargs)
        old_strategy = kwargs.pop("accelerator") if kwargs.get("accelerator") in _STRATEGY_ACCELERATORS else None
        if gpus is not None:
            kwargs.update(_translate_gpus(gpus))
        if old_strategy is not None:
            kwargs["strategy"] = _translate_strategy(old_strategy, kwargs)
        if auto_lr_find or auto_scale_batch_size:
            _say("Trainer(auto_lr_find=/auto_scale_batch_size=) is Lightning 1.x; in 2.x use "
                 "ember.lightning.tuner.Tuner(trainer).lr_find(model) / .scale_batch_size(model). Ignored here.")
        super().__init__(*args, **kwargs)
        self._resume_from_checkpoint = resume_from_checkpoint
        if resume_from_checkpoint is not None:
            _say("Trainer(resume_from_checkpoint=path) is Lightning 1.x; in 2.x it is "
                 "trainer.fit(model, ckpt_path=path). ember resumes from it in fit.")

    def fit(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Any = None, ckpt_path: Any = None) -> None:
        if ckpt_path is None:
            ckpt_path = self._resume_from_checkpoint
        super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path)


# Lightning 2.x arguments ember lacks, with the value that turns them off: passing that value (as configs
# written for Lightning's CLI do) changes nothing, so it is accepted; any other value is refused.
LIGHTNING_DEFAULTS = {"profiler": None, "plugins": None, "sync_batchnorm": False, "enable_autolog_hparams": True,
                      "model_registry": None}


def _drop_lightning_defaults(kwargs: dict[str, Any]) -> None:
    import inspect

    from ember.lightning.not_supported import refuse

    own = inspect.signature(_EmberTrainer.__init__).parameters
    for name, off in LIGHTNING_DEFAULTS.items():
        if name in kwargs and name not in own:
            value = kwargs.pop(name)
            if value != off:
                refuse(name, f"Trainer({name}={value!r})", TypeError)


def _translate_gpus(gpus: Any) -> dict[str, Any]:
    wanted = gpus if isinstance(gpus, int) else len(gpus) if isinstance(gpus, (list, tuple)) else int(gpus)
    if wanted == 0:
        _say("Trainer(gpus=0) is Lightning 1.x; in 2.x it is accelerator='cpu'.", stacklevel=4)
        return {"accelerator": "cpu"}
    if not torch.cuda.is_available():
        _say(f"Trainer(gpus={gpus!r}) is Lightning 1.x; in 2.x it is accelerator='gpu', devices={gpus!r}. No "
             "GPU is available here, so ember runs on the CPU.", stacklevel=4)
        return {"accelerator": "cpu"}
    _say(f"Trainer(gpus={gpus!r}) is Lightning 1.x; in 2.x it is accelerator='gpu', devices={gpus!r}.",
         stacklevel=4)
    return {"accelerator": "gpu", "devices": gpus}


_STRATEGY_ACCELERATORS = ("dp", "ddp", "ddp_spawn", "ddp2")  # 1.x: accelerator='ddp' is 2.x strategy='ddp'


def _translate_strategy(old: str, kwargs: dict[str, Any]) -> str:
    """The 2.x strategy of a 1.x `accelerator='dp'|'ddp'|'ddp_spawn'|'ddp2'` (dp and ddp2 became DDP: Lightning
    2.x removed them), or single device when there is only one device to run on."""
    from ember.strategies.select import device_count

    new = "ddp_spawn" if old == "ddp_spawn" else "ddp"
    removed = " (Lightning 2.x removed it; DDP gives the result of one process on the whole batch)" \
        if old in ("dp", "ddp2") else ""
    if device_count(kwargs.get("accelerator", "auto"), kwargs.get("devices", "auto")) < 2:
        _say(f"Trainer(accelerator={old!r}) is Lightning 1.x; in 2.x it is strategy={new!r}{removed}. There is one "
             "device here, so ember runs on it.", stacklevel=4)
        return kwargs.get("strategy", "auto")
    _say(f"Trainer(accelerator={old!r}) is Lightning 1.x; in 2.x it is strategy={new!r}{removed}. ember runs "
         f"strategy={new!r}.", stacklevel=4)
    return new


def _say(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, LightningDeprecationWarning, stacklevel=stacklevel)


def __getattr__(name: str):
    # `pl.cli` needs jsonargparse, so it is imported when it is asked for
    if name == "cli":
        import importlib

        return importlib.import_module("ember.lightning.cli")
    raise AttributeError(f"module 'ember.lightning' has no attribute {name!r}")


__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "callbacks", "core", "loggers",
           "seed_everything", "strategies", "trainer", "tuner", "utilities"]
