"""`lightning.pytorch.utilities`: the helpers Lightning code imports, on ember."""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

import torch
from torch import nn

from ember.attribute_dict import AttributeDict
from ember.data import move_to_device
from ember.gradients import grad_norm
from ember.lightning.not_supported import module_getattr
from ember.rank_zero import rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn
from ember.trainer_state import LightningEnum


class GradClipAlgorithmType(LightningEnum):
    """The values of `Trainer(gradient_clip_algorithm=...)`."""

    VALUE = "value"
    NORM = "norm"


def move_data_to_device(batch: Any, device: torch.device | str | int) -> Any:
    """Move every tensor (and every object with `.to(device)`) in a nested batch to `device`."""
    return move_to_device(batch, torch.device(device) if isinstance(device, (str, int)) else device)


def find_shared_parameters(module: nn.Module) -> list[list[str]]:
    """The names of parameters that are one tensor, grouped: `[['a.weight', 'b.weight'], ...]`."""
    groups: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def set_shared_parameters(module: nn.Module, shared_params: list[list[str]]) -> nn.Module:
    """Tie again the parameters `find_shared_parameters` found (moving a module to another device with
    some APIs unties them): every name of a group is set to the first name's parameter."""
    for names in shared_params:
        first = module.get_parameter(names[0])
        for name in names[1:]:
            owner, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, attribute, first)
    return module


def is_picklable(obj: object) -> bool:
    """Whether `pickle.dumps(obj)` works."""
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return False
    return True


def suggested_max_num_workers(local_world_size: int) -> int:
    """An upper bound for `DataLoader(num_workers=...)`: the CPUs this process may use, shared among the
    `local_world_size` processes of this machine, less one for each main process (at least 1)."""
    if local_world_size < 1:
        raise ValueError(f"suggested_max_num_workers(local_world_size={local_world_size}): expected >= 1, the "
                         "number of training processes on this machine.")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // local_world_size - 1)


class PossibleUserWarning(UserWarning):
    """A warning about something that may be intended (Lightning's category; ember warns with UserWarning)."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore `PossibleUserWarning`s (from `module` only, if given)."""
    warnings.filterwarnings("ignore", category=PossibleUserWarning, module=module)


__getattr__ = module_getattr("ember.lightning.utilities")

__all__ = ["AttributeDict", "GradClipAlgorithmType", "LightningEnum", "PossibleUserWarning",
           "disable_possible_user_warnings", "find_shared_parameters", "grad_norm", "is_picklable",
           "move_data_to_device", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only", "rank_zero_warn",
           "set_shared_parameters", "suggested_max_num_workers"]
