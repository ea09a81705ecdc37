"""Which strategy a Trainer's `strategy`, `accelerator`, `devices` and `num_nodes` arguments ask for."""

from __future__ import annotations

import os
from typing import Any

import torch

from ember.strategies.ddp import DDPStrategy
from ember.strategies.single import SingleDevice, Strategy
from ember.strategies.spawn import DDPSpawnStrategy


def select_strategy(strategy: Any, accelerator: str, devices: Any, num_nodes: int = 1) -> Strategy:
    """Turn the Trainer's `strategy`, `accelerator`, `devices` and `num_nodes` arguments into a Strategy."""
    if isinstance(strategy, Strategy) and not isinstance(strategy, DDPStrategy):
        return strategy
    accelerator = _resolve_accelerator(accelerator)
    count, indices = _resolve_devices(devices, accelerator)
    if isinstance(strategy, DDPStrategy):
        strategy.configure(accelerator, count, num_nodes, indices)
        return strategy
    if strategy in ("ddp_spawn", "ddp_spawn_find_unused_parameters_true"):
        return DDPSpawnStrategy(accelerator=accelerator, num_devices=count, num_nodes=num_nodes,
                                device_indices=indices, find_unused_parameters=strategy.endswith("_true"))
    if strategy in ("dp", "ddp2", "horovod", "deepspeed", "fsdp") or (isinstance(strategy, str) and
                                                                      strategy.startswith(("fsdp", "deepspeed"))):
        raise ValueError(f"Trainer(strategy={strategy!r}) is not supported by ember; use strategy='ddp'.")
    if strategy in ("ddp", "ddp_find_unused_parameters_true", "ddp_notebook") or (
            strategy in ("auto", None) and (count > 1 or num_nodes > 1)) or _launched_by_torchrun(strategy):
        return DDPStrategy(accelerator=accelerator, num_devices=count, num_nodes=num_nodes, device_indices=indices,
                           find_unused_parameters=strategy == "ddp_find_unused_parameters_true")
    if strategy not in ("auto", "single_device", None):
        raise ValueError(f"Trainer(strategy={strategy!r}) is not known; expected 'auto', 'single_device', 'ddp', "
                         "'ddp_spawn' or a Strategy object such as ember.strategies.DDPStrategy(...).")
    if accelerator == "cpu":
        return SingleDevice("cpu")
    if accelerator == "mps":
        return SingleDevice("mps")
    return SingleDevice(torch.device("cuda", indices[0]))


def device_count(accelerator: str, devices: Any) -> int:
    """How many devices `Trainer(accelerator=..., devices=...)` runs on."""
    return _resolve_devices(devices, _resolve_accelerator(accelerator))[0]


def _launched_by_torchrun(strategy: Any) -> bool:
    """Started by torchrun with several processes: the Trainer joins their group even with strategy='auto'."""
    return strategy in ("auto", None) and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


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


def _resolve_devices(devices: Any, accelerator: str) -> tuple[int, list[int]]:
    """(number of devices, their indices)."""
    if devices in ("auto", None):
        return 1, [0]
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            devices = [int(d) for d in text.split(",") if d.strip()]
        elif text.lstrip("-").isdigit():
            devices = int(text)
        else:
            raise ValueError(f"Trainer(devices={devices!r}) is not understood; expected an int, '-1', a list of "
                             "indices such as '0,1', or 'auto'.")
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("Trainer(devices=[]) selects no device; pass devices=1 or a list of indices.")
        return len(devices), [int(d) for d in devices]
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices == -1:
            count = torch.cuda.device_count() if accelerator == "cuda" else (os.cpu_count() or 1)
            return count, list(range(count))
        if devices < 1:
            raise ValueError(f"Trainer(devices={devices}) must be a positive count, -1 (all), or a list.")
        if accelerator == "cuda" and devices > torch.cuda.device_count():
            raise ValueError(f"Trainer(devices={devices}) but this machine has {torch.cuda.device_count()} CUDA "
                             "devices.")
        return devices, list(range(devices))
    raise ValueError(f"Trainer(devices={devices!r}) is not understood; expected an int, a list of indices, "
                     "or 'auto'.")
