"""``hexssl export``: backbone weights of a run for torchvision, timm or plain PyTorch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.backbones import build_backbone, export_state_dict
from hexssl.config import ConfigError
from hexssl.run.atomic import atomic_torch_save, atomic_write_text
from hexssl.run.checkpoints import load_checkpoint, safe_load
from hexssl.run.runs import checkpoint_path, run_config

RELEASE_FORMAT = "hexssl-backbone-fp16/1"


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


# ------------------------------------------------------------------ released weights
def release_meta_path(weights: str | Path) -> Path:
    """The JSON beside a released weights file: ``<name>.pt`` -> ``<name>.json``."""
    return Path(weights).with_suffix(".json")


def export_release(
    backbone: nn.Module,
    path: str | Path,
    name: str,
    kwargs: dict[str, Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a backbone as a small fp16 ``state_dict`` plus a JSON naming its architecture.

    The JSON holds what evaluating the weights needs without the run directory: the
    backbone ``name`` and ``kwargs`` for ``build_backbone``, and the eval transform (image
    size, normalisation mean / std of the training data). Floating tensors are stored as
    float16 (a ResNet-18 at width 16 is about 1.4 MB) unless float16 cannot hold them
    (see :func:`release_tensor`); integer buffers are kept.

    Example:
        >>> export_release(net, "w/simclr-s0.pt", "resnet18", {"stem": "cifar", "width": 16},
        ...                32, mean, std)  # doctest: +SKIP
    """
    path = Path(path)
    state = {k: release_tensor(k, v) for k, v in backbone.state_dict().items()}
    atomic_torch_save(state, path)
    meta = {
        "format": RELEASE_FORMAT,
        "weights": path.name,
        "backbone": {"name": name, "kwargs": dict(kwargs)},
        "eval_transform": {"image_size": image_size, "mean": list(mean), "std": list(std)},
        **(extra or {}),
    }
    atomic_write_text(release_meta_path(path), json.dumps(meta, indent=2) + "\n")
    return path


FP16_MAX = torch.finfo(torch.float16).max  # 65504


def release_tensor(name: str, v: Tensor) -> Tensor:
    """``v`` as stored in a release: float16, or float32 where float16 would overflow.

    BatchNorm running variances pass 65504 in practice (Barlow Twins' projector-driven
    activations: up to 7e5 in the HEX study's ResNet-18 at width 16); as float16 they
    become inf and the network's outputs NaN, so those tensors stay float32.
    """
    v = v.detach().cpu()
    if not v.is_floating_point():
        return v
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} holds non-finite values: the backbone cannot be released")
    return v.float() if v.numel() and float(v.abs().max()) > FP16_MAX else v.half()


def is_release(path: str | Path) -> bool:
    """True for a released weights file (a file with its architecture JSON beside it)."""
    p = Path(path)
    return p.suffix != ".json" and p.is_file() and release_meta_path(p).is_file()


def load_release(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(float32 backbone in eval mode, its JSON metadata) from :func:`export_release` files.

    Loaded with ``torch.load(weights_only=True)``: a weights file cannot run code.
    """
    path = Path(path)
    if path.suffix == ".json":
        raise ConfigError(
            f"{path} is the architecture file of released weights; pass the weights "
            f"{path.with_suffix('.pt')}"
        )
    meta_file = release_meta_path(path)
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: no architecture file {meta_file} beside the weights")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{meta_file} is not valid JSON ({err}); fetch it again") from None
    if not isinstance(meta, dict) or meta.get("format") != RELEASE_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigError(f"{meta_file}: format {got!r}, expected {RELEASE_FORMAT}")
    backbone = build_backbone(meta["backbone"]["name"], **meta["backbone"]["kwargs"])
    state = safe_load(path, "released weights")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"released weights {path} hold no tensor dict; export them again")
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ConfigError(
            f"{path}: non-finite values in {broken[:3]} (float16 overflow in an export "
            "before hexssl kept such tensors float32); export the run again"
        )
    try:
        backbone.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except RuntimeError as err:  # missing / unexpected keys, other shapes
        first = str(err).strip().splitlines()[0][:160]
        raise ConfigError(
            f"{path} does not fit the architecture in {meta_file.name} ({first}); "
            "keep each .pt with the .json exported with it"
        ) from None
    return backbone.eval(), meta
