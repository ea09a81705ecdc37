"""The experiment layer: `ember fit|validate|test|predict|tune` (Hydra apps over ember's packaged config
groups), safe instantiation at the edge, run folders, sweeps and an Optuna sweeper. Needs
`pip install 'ember[hydra]'`; `import ember` never imports it.

    trainer, module, datamodule = ember.experiment.compose("configs", ["experiment=mnist"])
"""

from __future__ import annotations

from typing import Any

__all__ = ["compose"]


def compose(config_dir: str, overrides: list[str] | None = None, output_dir: str | None = None) -> tuple[Any, Any, Any]:
    """(trainer, module, datamodule) built from ember's config groups and `config_dir`, as `ember fit` would.

    Args:
        config_dir: the user's config folder (with model/, data/, experiment/).
        overrides: command-line style overrides, e.g. ["experiment=x", "trainer.max_epochs=2"].
        output_dir: where logs and checkpoints go (default: a new folder under ./runs/<name>/).

    Example:
        >>> trainer, module, dm = compose("configs", ["experiment=x"])
        >>> trainer.fit(module, datamodule=dm)
    """
    from ember.experiment.compose import compose as _compose

    return _compose(config_dir, overrides, output_dir)
