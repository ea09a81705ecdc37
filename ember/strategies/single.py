"""The strategy interface, and the single-device strategy."""

from __future__ import annotations

from typing import Any

import torch


class Strategy:
    """What the Trainer asks of the process group: devices, reductions, barriers, who writes files.

    A distributed strategy overrides these; the defaults are those of one process.
    """

    root_device = torch.device("cpu")
    world_size = 1
    global_rank = 0
    local_rank = 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    def setup_environment(self) -> None:
        """Start processes / the process group (nothing to do for one device)."""

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move the module to its device; a DDP strategy wraps it here."""
        return module.to(self.root_device)

    def prepare_train_loader(self, loader: Any, seed: int) -> Any:
        """Hook for a distributed sampler; ember's resumable sampler is swapped in by the Trainer."""
        return loader

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        return tensor

    def reduce_bool(self, flag: bool) -> bool:
        """True if any process says True (used for should_stop)."""
        return flag

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass

    def teardown(self) -> None:
        pass


class SingleDevice(Strategy):
    """One process on one device."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.root_device = torch.device(device)


def select_strategy(strategy: Any, accelerator: str, devices: Any) -> Strategy:
    """Turn the Trainer's `strategy`, `accelerator` and `devices` arguments into a Strategy."""
    if isinstance(strategy, Strategy):
        return strategy
    accelerator = _resolve_accelerator(accelerator)
    count, index = _resolve_devices(devices, accelerator)
    if strategy not in ("auto", "single_device", None) or count > 1:
        raise ValueError(
            f"Trainer(strategy={strategy!r}, devices={devices!r}) asks for several processes; this ember "
            "release runs on a single device (DDP through torch.distributed is planned). Use devices=1 "
            "and strategy='auto'.")
    if accelerator == "cpu":
        return SingleDevice("cpu")
    if accelerator == "mps":
        return SingleDevice("mps")
    return SingleDevice(torch.device("cuda", index))


def _resolve_accelerator(accelerator: str) -> str:
    if accelerator in ("auto", None):
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"Trainer(accelerator={accelerator!r}) but no CUDA GPU is available on this "
                             "machine; use accelerator='cpu' or 'auto'.")
        return "cuda"
    if accelerator == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("Trainer(accelerator='mps') but MPS is not available; use 'cpu' or 'auto'.")
        return "mps"
    if accelerator == "cpu":
        return "cpu"
    raise ValueError(f"Trainer(accelerator={accelerator!r}) is not known; expected 'auto', 'cpu', 'gpu', "
                     "'cuda' or 'mps'.")


def _resolve_devices(devices: Any, accelerator: str) -> tuple[int, int]:
    """(number of devices, index of the first)."""
    if devices in ("auto", None):
        return 1, 0
    if isinstance(devices, str):
        devices = [int(d) for d in devices.split(",") if d.strip()] if "," in devices else int(devices)
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("Trainer(devices=[]) selects no device; pass devices=1 or a list of indices.")
        return len(devices), int(devices[0])
    if isinstance(devices, int):
        if devices == -1:
            return (torch.cuda.device_count() if accelerator == "cuda" else 1), 0
        if devices < 1:
            raise ValueError(f"Trainer(devices={devices}) must be a positive count, -1 (all), or a list.")
        return devices, 0
    raise ValueError(f"Trainer(devices={devices!r}) is not understood; expected an int, a list of indices, "
                     "or 'auto'.")
