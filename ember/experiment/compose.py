"""`ember.experiment.compose`: the command's objects, without the command (for notebooks and tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def compose(config_dir: str, overrides: list[str] | None = None, output_dir: str | None = None) -> tuple[Any, Any, Any]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from ember.experiment import app, runs
    from ember.experiment.instantiate import build

    config_dir = str(Path(config_dir).resolve())
    if not Path(config_dir).is_dir():
        raise FileNotFoundError(f"compose(config_dir={config_dir!r}): no such folder; pass the folder that holds "
                                "your model/, data/ and experiment/ configs.")
    allowed = app.importable([config_dir])
    overrides = [*(overrides or []), f"hydra.searchpath=[file://{config_dir}]"]
    with initialize_config_module(config_module=app.CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name=app.CONFIG_NAME, overrides=overrides)
    if output_dir is None:
        output_dir = str(Path(OmegaConf.select(cfg, "paths.root") or ".") / "runs" / str(cfg.name)
                         / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{runs.short_id()}")
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(output_dir).resolve())
        cfg.paths.root_abs = str(Path.cwd())
    return build(cfg, cfg.paths.output_dir, allowed)
