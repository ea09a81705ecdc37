"""The running reduction of one logged key over an epoch (weighted mean, sum, max or min)."""

from __future__ import annotations

import struct
from typing import Any, Mapping

import torch

_COMPACT_EVERY = 1024  # bounded memory on very long epochs: fold the stored values into one total
_FLOAT32 = struct.Struct("f")


class EpochAggregate:
    """The running reduction of one key over an epoch: weighted mean, sum, max or min."""

    def __init__(self, reduce_fx: str):
        self.reduce_fx = reduce_fx
        self.values: list[torch.Tensor] = []
        self.weights: list[float] = []
        self.total: torch.Tensor | None = None
        self.weight = 0.0

    def add(self, value: torch.Tensor, weight: float) -> None:
        self.values.append(value)
        self.weights.append(weight)
        if len(self.values) >= _COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        if not self.values:
            return
        if self.reduce_fx in ("mean", "sum"):
            # one value at a time in float32 (float64 values stay float64), in the order they came: the
            # arithmetic of Lightning's epoch aggregates, so that the same run gives the same epoch values
            total = self._float32_in_order()
            if total is None:
                total = self.total
                for value, weight in zip(self.values, self.weights):
                    value = value.reshape(())
                    if value.dtype not in (torch.float32, torch.float64):
                        value = value.float()
                    part = value * weight if self.reduce_fx == "mean" else value
                    total = part if total is None else total + part
        else:
            values = torch.stack([v.reshape(()) for v in self.values]).double()
            part = values.max() if self.reduce_fx == "max" else values.min()
            combine = torch.maximum if self.reduce_fx == "max" else torch.minimum
            total = part if self.total is None else combine(self.total, part)
        self.total = total
        self.weight += sum(self.weights)
        self.values, self.weights = [], []

    def _float32_in_order(self) -> torch.Tensor | None:
        """The float32 total of the stored values (times their weights, for a mean) added one at a time to
        the total so far, as the loop in `_compact` adds them, in one stack and a Python loop instead of two
        tensor operations per value; None when the values are not all float32 scalars of one device, or the
        sum leaves float32's range (the loop handles those). Exact: each product and sum of two float32
        numbers is computed in double, which holds it exactly (a product) or rounds it once more harmlessly
        (53 >= 2 * 24 + 2 bits), then rounded to float32."""
        values, total = self.values, self.total
        if not all(v.dtype == torch.float32 for v in values) or (total is not None and total.dtype != torch.float32):
            return None
        try:
            stacked = torch.stack(values)
        except RuntimeError:  # different shapes or devices
            return None
        if stacked.numel() != len(values):
            return None
        stacked = stacked.reshape(-1)
        if self.reduce_fx == "mean":
            stacked = stacked * torch.tensor(self.weights, dtype=torch.float32, device=stacked.device)
        pack, unpack = _FLOAT32.pack, _FLOAT32.unpack
        acc = None if total is None else total.tolist()
        try:
            for part in stacked.tolist():
                acc = part if acc is None else unpack(pack(acc + part))[0]
        except OverflowError:
            return None
        return torch.tensor(acc, dtype=torch.float32, device=stacked.device)

    def partial(self) -> tuple[torch.Tensor | None, float]:
        """(weighted total or reduced value so far, total weight): what is combined across ranks."""
        self._compact()
        return self.total, self.weight

    def compute(self) -> torch.Tensor:
        self._compact()
        if self.total is None:
            raise ValueError("nothing was logged")
        if self.reduce_fx == "mean":
            return (self.total / self.weight).float()
        return self.total.float()

    def state_dict(self) -> dict[str, Any]:
        self._compact()
        return {"reduce_fx": self.reduce_fx, "total": None if self.total is None else self.total.cpu(),
                "weight": self.weight}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "EpochAggregate":
        agg = cls(state["reduce_fx"])
        agg.total, agg.weight = state["total"], state["weight"]
        return agg
