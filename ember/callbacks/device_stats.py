"""DeviceStatsMonitor: log the device's memory (CUDA) or the CPU's load (psutil) during training."""

from __future__ import annotations

from typing import Any

import torch

from ember.callbacks.base import Callback


def cpu_stats() -> dict[str, float]:
    """Memory and CPU use of this machine, in percent."""
    try:
        import psutil
    except ImportError as err:
        raise ImportError("DeviceStatsMonitor logs CPU stats with psutil, which is not installed: "
                          "pip install 'ember[stats]' (or pass cpu_stats=False).") from err
    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}


def device_stats(device: torch.device) -> dict[str, float]:
    """`torch.cuda.memory_stats` on a CUDA device; the CPU stats on the CPU; nothing elsewhere."""
    if device.type == "cuda":
        return {k: float(v) for k, v in torch.cuda.memory_stats(device).items() if isinstance(v, (int, float))}
    if device.type == "cpu":
        return cpu_stats()
    return {}


class DeviceStatsMonitor(Callback):
    """Log the device's stats at the start and end of each training, validation and test batch.

    The keys are `DeviceStatsMonitor.<hook>/<stat>` (e.g. `DeviceStatsMonitor.on_train_batch_end/cpu_percent`),
    sent to every logger every `log_every_n_steps` steps.

    Args:
        cpu_stats: also log the CPU's stats on a GPU (True), never log them (False), or log them when
            training on the CPU (None). CPU stats need psutil: `pip install 'ember[stats]'`.

    Example:
        >>> ember.Trainer(callbacks=[DeviceStatsMonitor()], logger=CSVLogger("logs"))
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self._cpu_stats = cpu_stats

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise ValueError("DeviceStatsMonitor writes to the loggers, and this Trainer has none (logger=False). "
                             "Enable a logger or remove the callback.")
        wants_cpu = self._cpu_stats or (self._cpu_stats is None and trainer.root_device.type == "cpu")
        if wants_cpu:
            cpu_stats()  # fail now, naming the extra, rather than at the first batch

    def _log(self, trainer, hook: str) -> None:
        if (trainer.global_step + 1) % trainer.log_every_n_steps != 0 and not trainer.should_stop:
            return
        device = trainer.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats: dict[str, Any] = device_stats(device)
        if self._cpu_stats and device.type != "cpu":
            stats.update(cpu_stats())
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            separator = getattr(logger, "group_separator", "/")
            logger.log_metrics({f"{prefix}{separator}{k}": v for k, v in stats.items()}, step=trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_end")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_validation_batch_start")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_validation_batch_end")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_test_batch_start")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_test_batch_end")


__all__ = ["DeviceStatsMonitor", "cpu_stats", "device_stats"]
