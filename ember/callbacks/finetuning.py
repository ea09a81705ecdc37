"""Finetuning: freeze parts of a model before training and unfreeze them at chosen epochs, each unfrozen part
joining the optimizer as a new parameter group."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ember._logging import log
from ember.callbacks.base import Callback

Modules = nn.Module | Iterable[Any]


class BaseFinetuning(Callback):
    """Subclass it: freeze in `freeze_before_training(pl_module)`, unfreeze in `finetune_function(pl_module,
    epoch, optimizer)` (called at the start of every training epoch, once per optimizer) with
    `self.unfreeze_and_add_param_group(modules, optimizer)`.

    The parameter groups it adds are saved in the checkpoint (by parameter name) and added again before
    a resumed fit loads the optimizers' states, so a resume continues with the same groups.

    Example:
        >>> class UnfreezeAt(BaseFinetuning):
        ...     def freeze_before_training(self, pl_module):
        ...         self.freeze(pl_module.encoder)
        ...     def finetune_function(self, pl_module, epoch, optimizer):
        ...         if epoch == 5:
        ...             self.unfreeze_and_add_param_group(pl_module.encoder, optimizer, lr=1e-4)
    """

    def __init__(self) -> None:
        # optimizer index -> its parameter groups, with parameter names in place of the tensors
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}

    # --- the toolkit ----------------------------------------------------------------------------------

    @staticmethod
    def flatten_modules(modules: Modules) -> list[nn.Module]:
        """The leaf modules of `modules` (a module, or nested iterables of them), and every module above them
        that holds parameters itself."""
        if isinstance(modules, nn.ModuleDict):
            modules = modules.values()
        if isinstance(modules, nn.Module):
            found = list(modules.modules())
        else:
            found = [leaf for item in modules for leaf in BaseFinetuning.flatten_modules(item)]
        return [m for m in found if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Iterator[nn.Parameter]:
        """The parameters of `modules` whose `requires_grad` is `requires_grad` (batch norms' only if `train_bn`)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze every parameter of `modules` (batch norms track running statistics again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: nn.Module) -> None:
        """Freeze the parameters `module` holds itself (a batch norm also stops tracking running statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze `modules`; their batch norms stay trainable when `train_bn`."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
        """`params` less those the optimizer already has (the same tensor), with a warning if there were any."""
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = list(params)
        new = [p for p in params if id(p) not in held]
        if len(new) < len(params):
            log.warning("%d of the parameters to unfreeze are already in a group of %s and are skipped. Did "
                        "configure_optimizers give the optimizer every parameter? Give it only the trainable "
                        "ones: %s(filter(lambda p: p.requires_grad, self.parameters()), ...).",
                        len(params) - len(new), type(optimizer).__name__, type(optimizer).__name__)
        return new

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: torch.optim.Optimizer, lr: float | None = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Unfreeze `modules` and add their parameters to `optimizer` as a new group.

        Args:
            lr: the group's learning rate; None: the first group's, divided by `initial_denom_lr`.
            train_bn: also add the batch norms' parameters.
        """
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_on_optimizer(optimizer, BaseFinetuning.filter_params(modules, train_bn, True))
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    # --- what subclasses define ---------------------------------------------------------------------

    def freeze_before_training(self, pl_module: nn.Module) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define freeze_before_training(self, pl_module), "
                                  "freezing what should not train at first (self.freeze(pl_module.backbone)).")

    def finetune_function(self, pl_module: nn.Module, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define finetune_function(self, pl_module, epoch, "
                                  "optimizer), unfreezing at the epochs it chooses.")

    # --- hooks ------------------------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.freeze_before_training(pl_module)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # runs before the optimizers' states are loaded, which needs the groups this callback had added
        saved = checkpoint.get("callbacks", {}).get(self.state_key)
        if not saved or not saved.get("internal_optimizer_metadata"):
            return
        self.load_state_dict(saved)
        named = dict(pl_module.named_parameters())
        for index, optimizer in enumerate(trainer.optimizers):
            groups = self._internal_optimizer_metadata.get(index)
            if groups is None:
                continue
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            for group in groups[len(optimizer.param_groups):]:
                names = [name for name in group["params"] if id(named[name]) not in held]
                _unfreeze(pl_module, names)  # setup froze them again; the saved run was training them
                optimizer.add_param_group({**group, "params": [named[name] for name in names]})

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        names = {id(p): name for name, p in pl_module.named_parameters()}
        for index, optimizer in enumerate(trainer.optimizers):
            groups_before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            known = self._internal_optimizer_metadata.setdefault(index, [])
            start = 0 if not known else groups_before
            if not known or len(optimizer.param_groups) != groups_before:
                known.extend(_by_name(group, names) for group in optimizer.param_groups[start:])

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": {i: [dict(g) for g in groups]
                                                for i, groups in self._internal_optimizer_metadata.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("internal_optimizer_metadata", {})
        self._internal_optimizer_metadata = {int(i): [dict(g) for g in groups] for i, groups in saved.items()}


def _unfreeze(model: nn.Module, names: list[str]) -> None:
    for name in names:
        owner = model.get_submodule(name.rpartition(".")[0])
        if isinstance(owner, _BatchNorm):
            owner.track_running_stats = True
        model.get_parameter(name).requires_grad = True


def _by_name(group: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    return {**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default: the backbone's learning rate doubles every epoch."""
    return 2.0


class BackboneFinetuning(BaseFinetuning):
    """Freeze `pl_module.backbone` until `unfreeze_backbone_at_epoch`, then train it with its own, growing,
    learning rate.

    At that epoch the backbone joins the optimizer with `backbone_initial_lr` (default: the current learning
    rate times `backbone_initial_ratio_lr`). At each later epoch its learning rate is multiplied by
    `lambda_func(epoch + 1)`, and, when `should_align`, capped at the first group's learning rate.

    Args:
        unfreeze_backbone_at_epoch: the epoch (0-based) at which the backbone starts training.
        lambda_func: epoch -> factor applied to the backbone's learning rate (default: 2.0).
        backbone_initial_ratio_lr / backbone_initial_lr: the backbone's first learning rate.
        should_align: cap the backbone's learning rate at the rest of the model's.
        initial_denom_lr: unused with a given learning rate; kept for Lightning's signature.
        train_bn: batch norms of the frozen backbone still train.
        verbose: log the learning rates when they change; `rounding`: their digits.

    Example:
        >>> ember.Trainer(callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=5)])
    """

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable[[int], float] = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: float | None = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), nn.Module):
            raise ValueError(f"BackboneFinetuning freezes and unfreezes `pl_module.backbone`, and "
                             f"{type(pl_module).__name__} has no nn.Module attribute named backbone. Name the "
                             "part to finetune `self.backbone`, or subclass BaseFinetuning.")
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: nn.Module) -> None:
        self.freeze(pl_module.backbone, train_bn=self.train_bn)

    def finetune_function(self, pl_module: nn.Module, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = self.backbone_initial_lr if self.backbone_initial_lr is not None \
                else lr * self.backbone_initial_ratio_lr
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)
        elif epoch > self.unfreeze_backbone_at_epoch:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > lr:
                backbone_lr = lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
        else:
            return
        self.previous_backbone_lr = backbone_lr
        if self.verbose:
            log.info("Current lr: %s, Backbone lr: %s", round(lr, self.rounding), round(backbone_lr, self.rounding))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict.get("previous_backbone_lr")
        super().load_state_dict(state_dict)


__all__ = ["BackboneFinetuning", "BaseFinetuning", "multiplicative"]
