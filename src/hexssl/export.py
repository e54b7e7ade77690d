"""``hexssl export``: backbone weights of a run for torchvision, timm or plain PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch

from hexssl.atomic import atomic_torch_save
from hexssl.backbones import build_backbone, export_state_dict
from hexssl.checkpoints import load_checkpoint
from hexssl.runs import checkpoint_path, run_config


def backbone_state(ckpt: Path) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors of a Lightning checkpoint, prefix removed."""
    state = load_checkpoint(ckpt)["state_dict"]
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def export_run(
    run_dir: str | Path, fmt: str, out: str | Path | None = None, which: str = "last"
) -> Path:
    """Write the run's backbone as ``fmt`` and return the file path.

    The file is a plain ``{name: tensor}`` dict; see ``hexssl.backbones.export_state_dict``
    for how to load it into a torchvision or timm model.
    """
    run = Path(run_dir)
    cfg = run_config(run)
    backbone = build_backbone(cfg.backbone.name, **cfg.backbone.kwargs)
    backbone.load_state_dict(backbone_state(checkpoint_path(run, which)))
    path = Path(out) if out else run / f"backbone-{fmt}.pt"
    atomic_torch_save(export_state_dict(backbone, fmt), path)
    return path
