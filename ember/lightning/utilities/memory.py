"""`lightning.pytorch.utilities.memory`."""

from __future__ import annotations

from ember.tuner.batch_size import free_memory as garbage_collection_cuda
from ember.tuner.batch_size import is_out_of_memory as is_oom_error

__all__ = ["garbage_collection_cuda", "is_oom_error"]
