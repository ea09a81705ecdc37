"""Precision: which dtype the forward pass runs in, and loss scaling for float16.

| precision      | weights  | forward                    | scaler            |
|----------------|----------|----------------------------|-------------------|
| `32-true`      | float32  | float32                    | -                 |
| `64-true`      | float64  | float64 (inputs converted) | -                 |
| `bf16-mixed`   | float32  | autocast to bfloat16       | -                 |
| `16-mixed`     | float32  | autocast to float16        | GradScaler        |
| `bf16-true`    | bfloat16 | bfloat16                   | -                 |
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ContextManager

import torch

ALIASES = {
    "32": "32-true", 32: "32-true", "32-true": "32-true",
    "64": "64-true", 64: "64-true", "64-true": "64-true",
    "16": "16-mixed", 16: "16-mixed", "16-mixed": "16-mixed",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "bf16-true": "bf16-true",
}


def parse_precision(value: Any) -> str:
    try:
        return ALIASES[value]
    except (KeyError, TypeError):
        raise ValueError(f"Trainer(precision={value!r}) is not a precision ember knows; expected one of "
                         "'32-true', '64-true', 'bf16-mixed', '16-mixed', 'bf16-true' (or 32, 64, 16, "
                         "'bf16').") from None


class Precision:
    """Autocast and grad scaling for one precision setting on one device type."""

    def __init__(self, precision: str, device_type: str):
        self.precision = precision
        self.device_type = device_type
        self.scaler: torch.amp.GradScaler | None = None
        if precision == "16-mixed":
            self.scaler = torch.amp.GradScaler(device_type)
        # the dtype of weights and floating inputs when they are not float32 (None: leave them)
        self.param_dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}.get(precision)
        self._unscaled: set[int] = set()  # ids of the optimizers unscaled since their last step

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        dtype = self.param_dtype
        return module.to(dtype) if dtype is not None else module

    def convert_input(self, batch: Any) -> Any:
        """Floating-point tensors in the batch take the weights' dtype under `64-true` / `bf16-true`."""
        dtype = self.param_dtype
        if dtype is None:
            return batch
        return _map_floats(batch, dtype)

    @property
    def autocasts(self) -> bool:
        """Whether the forward pass runs under autocast (the `-mixed` precisions)."""
        return self.precision in ("bf16-mixed", "16-mixed")

    def forward_context(self) -> ContextManager:
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        if self.precision == "16-mixed":
            return torch.autocast(self.device_type, dtype=torch.float16)
        return contextlib.nullcontext()

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss as backward should see it (multiplied by the grad scaler's scale under 16-mixed)."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward(*args, **kwargs)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before clipping or inspecting them (once per step:
        clipping in the step hooks may ask again)."""
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> Any:
        """Step `optimizer`; a closure (training_step and backward) runs inside the optimizer's step, or,
        under 16-mixed, before the scaler's step (which takes no closure)."""
        if self.scaler is None:
            return optimizer.step(closure) if closure is not None else optimizer.step()
        result = None
        if closure is not None:
            if isinstance(optimizer, torch.optim.LBFGS):
                raise ValueError("16-mixed precision cannot step LBFGS, which calls its closure several times "
                                 "per step; use precision='bf16-mixed' or '32-true'.")
            result = closure()
        self.scaler.step(optimizer)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def _map_floats(batch: Any, dtype: torch.dtype) -> Any:
    """`batch` with its floating-point tensors in `dtype`, through dicts, lists, tuples, namedtuples and
    dataclasses (the containers `move_to_device` walks)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return type(batch)({k: _map_floats(v, dtype) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_map_floats(v, dtype) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map_floats(v, dtype) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: _map_floats(getattr(batch, f.name), dtype)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch
