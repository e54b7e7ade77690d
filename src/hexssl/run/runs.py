"""Re-opening a finished run: its config, data and trained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hexssl.config import ConfigError, RunConfig, load_config
from hexssl.methods.base import SSLMethod
from hexssl.run.build import build_datamodule, build_method
from hexssl.run.checkpoints import load_checkpoint, run_checkpoint


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``last``/``previous`` inside the run, or an explicit file."""
    return run_checkpoint(run_dir, which)


def checkpoint_tag(which: str) -> str:
    """The name a checkpoint's results carry: ``last``, ``previous`` or the file's stem."""
    return which if which in ("last", "previous") else Path(which).stem


def prefixed_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` (e.g. ``backbone.``), prefix removed."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The resolved config saved in ``<run>/config.yaml`` plus overrides."""
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    return load_config(run / "config.yaml", overrides)


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` of a Lightning checkpoint."""
    state: dict[str, torch.Tensor] = load_checkpoint(path)["state_dict"]  # weights_only
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
    path = checkpoint_path(run, which)
    load_weights(method, path)
    print(f"[hexssl] evaluating {path} (--checkpoint {which})", flush=True)
    return cfg, method.eval(), dm
