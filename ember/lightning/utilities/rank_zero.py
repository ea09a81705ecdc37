"""`lightning.pytorch.utilities.rank_zero`."""

from ember.rank_zero import (rank_prefixed_message, rank_zero_debug, rank_zero_deprecation, rank_zero_info,
                             rank_zero_only, rank_zero_warn)

__all__ = ["rank_prefixed_message", "rank_zero_debug", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only",
           "rank_zero_warn"]
