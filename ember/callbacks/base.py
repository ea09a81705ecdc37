"""Callback: named no-op hooks, and a list of callbacks that is called like one callback."""

from __future__ import annotations

from typing import Any, Callable, Iterable

HOOKS = (
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end",
    "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
    "on_save_checkpoint", "on_load_checkpoint", "on_exception",
)


class Callback:
    """Base class: override the hooks you need; every hook receives (trainer, module, ...).

    Example:
        >>> class PrintLoss(ember.Callback):
        ...     def on_train_epoch_end(self, trainer, module):
        ...         print(trainer.callback_metrics["train_loss"])
    """

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint: its class's qualified name (Lightning's key, so
        callback states move both ways); callbacks that may appear twice add their identifying arguments."""
        return type(self).__qualname__

    def _state_key_with(self, **identity: Any) -> str:
        # the same string Lightning builds: class qualname, then the repr of the arguments in this order
        return f"{type(self).__qualname__}{identity!r}"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass

    def setup(self, trainer, pl_module, stage: str) -> None: ...
    def teardown(self, trainer, pl_module, stage: str) -> None: ...
    def on_fit_start(self, trainer, pl_module) -> None: ...
    def on_fit_end(self, trainer, pl_module) -> None: ...
    def on_sanity_check_start(self, trainer, pl_module) -> None: ...
    def on_sanity_check_end(self, trainer, pl_module) -> None: ...
    def on_train_start(self, trainer, pl_module) -> None: ...
    def on_train_end(self, trainer, pl_module) -> None: ...
    def on_train_epoch_start(self, trainer, pl_module) -> None: ...
    def on_train_epoch_end(self, trainer, pl_module) -> None: ...
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None: ...
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None: ...
    def on_validation_start(self, trainer, pl_module) -> None: ...
    def on_validation_end(self, trainer, pl_module) -> None: ...
    def on_validation_epoch_start(self, trainer, pl_module) -> None: ...
    def on_validation_epoch_end(self, trainer, pl_module) -> None: ...
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int,
                                  dataloader_idx: int = 0) -> None: ...
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None: ...
    def on_test_start(self, trainer, pl_module) -> None: ...
    def on_test_end(self, trainer, pl_module) -> None: ...
    def on_test_epoch_start(self, trainer, pl_module) -> None: ...
    def on_test_epoch_end(self, trainer, pl_module) -> None: ...
    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None: ...
    def on_predict_start(self, trainer, pl_module) -> None: ...
    def on_predict_end(self, trainer, pl_module) -> None: ...
    def on_predict_epoch_start(self, trainer, pl_module) -> None: ...
    def on_predict_epoch_end(self, trainer, pl_module) -> None: ...
    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int,
                               dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                             dataloader_idx: int = 0) -> None: ...
    def on_before_backward(self, trainer, pl_module, loss) -> None: ...
    def on_after_backward(self, trainer, pl_module) -> None: ...
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None: ...
    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None: ...
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None: ...
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None: ...
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None: ...


def _overrides_or_sets(callback: Callback, name: str) -> bool:
    """`callback` does something in hook `name`: its class overrides it, or the instance was given one."""
    return name in vars(callback) or getattr(type(callback), name) is not getattr(Callback, name)


class CallbackList(Callback):
    """Several callbacks called as one: `callbacks.on_train_batch_end(trainer, module, ...)`.

    Each method loops over the callbacks that do something in that hook (their class overrides it, or it
    was set on the instance: `cb.on_train_epoch_end = fn`). Those lists are made once, when the list is
    built, so a hook nobody overrides costs one call over an empty loop per step. The evaluation and
    predict batch hooks pass `dataloader_idx` on only when the loop gave one (several dataloaders), so a
    callback written as `on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx)` works.

    Args:
        callbacks: the callbacks, called in this order.

    Example:
        >>> callbacks = CallbackList([EarlyStopping(monitor="val_loss"), ModelCheckpoint()])
        >>> callbacks.on_train_epoch_end(trainer, module)
    """

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)
        # bound methods, taken now: a hook set on an instance after this is not seen (the trainer builds
        # a new list for every fit/validate/test/predict)
        self._hooks: dict[str, list[Callable[..., Any]]] = {
            name: [getattr(cb, name) for cb in self.callbacks if _overrides_or_sets(cb, name)] for name in HOOKS}

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def has(self, hook: str) -> bool:
        """Whether some callback of the list does something in `hook`."""
        return bool(self._hooks[hook])

    def setup(self, trainer, pl_module, stage: str) -> None:
        for hook in self._hooks["setup"]:
            hook(trainer, pl_module, stage=stage)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for hook in self._hooks["teardown"]:
            hook(trainer, pl_module, stage=stage)

    def on_fit_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_fit_start"]:
            hook(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_fit_end"]:
            hook(trainer, pl_module)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_sanity_check_start"]:
            hook(trainer, pl_module)

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_sanity_check_end"]:
            hook(trainer, pl_module)

    def on_train_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_train_start"]:
            hook(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_train_end"]:
            hook(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_train_epoch_start"]:
            hook(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_train_epoch_end"]:
            hook(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        for hook in self._hooks["on_train_batch_start"]:
            hook(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        for hook in self._hooks["on_train_batch_end"]:
            hook(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_validation_start"]:
            hook(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_validation_end"]:
            hook(trainer, pl_module)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_validation_epoch_start"]:
            hook(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_validation_epoch_end"]:
            hook(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int,
                                  dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_validation_batch_start"]:
            hook(trainer, pl_module, batch, batch_idx, *extra)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_validation_batch_end"]:
            hook(trainer, pl_module, outputs, batch, batch_idx, *extra)

    def on_test_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_test_start"]:
            hook(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_test_end"]:
            hook(trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_test_epoch_start"]:
            hook(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_test_epoch_end"]:
            hook(trainer, pl_module)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int,
                            dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_test_batch_start"]:
            hook(trainer, pl_module, batch, batch_idx, *extra)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                          dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_test_batch_end"]:
            hook(trainer, pl_module, outputs, batch, batch_idx, *extra)

    def on_predict_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_predict_start"]:
            hook(trainer, pl_module)

    def on_predict_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_predict_end"]:
            hook(trainer, pl_module)

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_predict_epoch_start"]:
            hook(trainer, pl_module)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_predict_epoch_end"]:
            hook(trainer, pl_module)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int,
                               dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_predict_batch_start"]:
            hook(trainer, pl_module, batch, batch_idx, *extra)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                             dataloader_idx: int | None = None) -> None:
        extra = () if dataloader_idx is None else (dataloader_idx,)
        for hook in self._hooks["on_predict_batch_end"]:
            hook(trainer, pl_module, outputs, batch, batch_idx, *extra)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        for hook in self._hooks["on_before_backward"]:
            hook(trainer, pl_module, loss)

    def on_after_backward(self, trainer, pl_module) -> None:
        for hook in self._hooks["on_after_backward"]:
            hook(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for hook in self._hooks["on_before_optimizer_step"]:
            hook(trainer, pl_module, optimizer)

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        for hook in self._hooks["on_before_zero_grad"]:
            hook(trainer, pl_module, optimizer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for hook in self._hooks["on_save_checkpoint"]:
            hook(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for hook in self._hooks["on_load_checkpoint"]:
            hook(trainer, pl_module, checkpoint)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        for hook in self._hooks["on_exception"]:
            hook(trainer, pl_module, exception)
