"""Re-opening a finished run: its config, data and trained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hexssl.build import build_datamodule, build_method
from hexssl.config import ConfigError, RunConfig, load_config
from hexssl.methods.base import SSLMethod


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``last``/``best`` inside the run, or an explicit file."""
    path = run_dir / "checkpoints" / f"{which}.ckpt" if which in ("last", "best") else Path(which)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path} (train first, or pass --checkpoint)")
    return path


def run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The resolved config saved in ``<run>/config.yaml`` plus overrides."""
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    return load_config(run / "config.yaml", overrides)


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` of a Lightning checkpoint."""
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    return state


def load_weights(method: SSLMethod, path: Path) -> None:
    """Load a Lightning checkpoint's weights (strict: architecture must match)."""
    method.load_state_dict(checkpoint_state(path))


def open_run(
    run_dir: str | Path, overrides: list[str] | None = None, which: str = "last"
) -> tuple[RunConfig, SSLMethod, Any]:
    """(config, trained method in eval mode, set-up data module) of a run."""
    run = Path(run_dir)
    cfg = run_config(run, overrides)
    dm = build_datamodule(cfg)
    dm.setup()
    method = build_method(cfg, dm)
    load_weights(method, checkpoint_path(run, which))
    return cfg, method.eval(), dm
