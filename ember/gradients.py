"""Gradient norms to log: `self.log_dict(grad_norm(self, norm_type=2))` in `on_before_optimizer_step`."""

from __future__ import annotations

import torch
from torch import nn


def grad_norm(module: nn.Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, torch.Tensor]:
    """The norm of each parameter's gradient, and of all of them together.

    Parameters without a gradient are left out. The keys are `grad_{p}_norm{sep}{parameter name}` and
    `grad_{p}_norm_total`, where `p` is `float(norm_type)` ('2.0', 'inf'); the total is the `p`-norm of the
    per-parameter norms (the norm of all gradients as one vector).

    Args:
        module: the model whose gradients to measure.
        norm_type: the order of the norm: a positive number, or 'inf'.
        group_separator: what joins the prefix and the parameter name ('/' groups them in TensorBoard).

    Example:
        >>> def on_before_optimizer_step(self, optimizer):
        ...     self.log_dict(grad_norm(self.layer, norm_type=2))
    """
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        p = None
    if p is None or p <= 0:
        raise ValueError(f"grad_norm(norm_type={norm_type!r}): expected a positive number or 'inf'.")
    prefix = f"grad_{p}_norm"
    norms = {f"{prefix}{group_separator}{name}": torch.linalg.vector_norm(param.grad.detach(), ord=p)
             for name, param in module.named_parameters() if param.grad is not None}
    if norms:
        norms[f"{prefix}_total"] = torch.linalg.vector_norm(torch.stack(list(norms.values())), ord=p)
    return norms


__all__ = ["grad_norm"]
