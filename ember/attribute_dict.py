"""AttributeDict, the type of `self.hparams`, and the names Lightning's own AttributeDict has had.

It lives in a module of its own because both checkpoint loading (which turns Lightning's pickled
AttributeDicts into this one) and `ember.hparams` need it, and neither imports the other.
"""

from __future__ import annotations

from typing import Any

# Where Lightning's AttributeDict class has lived. Lightning pickles it when a hyperparameter is one (a
# checkpoint of `__init__(self, cfg)` called with an AttributeDict); a safe load refuses unknown classes.
LIGHTNING_ATTRIBUTE_DICT_NAMES = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)


class AttributeDict(dict):
    """A dict whose keys are also attributes: `hparams.lr` and `hparams["lr"]`.

    Example:
        >>> hparams = AttributeDict(lr=0.1)
        >>> hparams.lr, hparams["lr"]
        (0.1, 0.1)
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            # note: str() the keys, which may mix types (sorting [1, "a"] would raise a TypeError here)
            raise AttributeError(f"hparams has no {key!r}; it has {sorted(map(str, self))}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]
