"""Frozen-backbone feature extraction and an on-disk feature cache.

Batches follow CONTRACTS.md: ``(images_uint8 (B,3,H,W), label (B,), superlabel (B,),
index (B,))``. The cache lives at ``<run_dir>/features/<split>.pt`` so that kNN, linear
probes and hierarchy reports can run again without touching the backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

Batch = Sequence[Tensor]
Features = tuple[Tensor, Tensor, Tensor]  # feats (N, D) float32, labels (N,), superlabels (N,)


def to_float_images(images: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float in [0, 1]; float input passes through.

    Used when the caller gives no eval transform. Shape: (B, 3, H, W) -> (B, 3, H, W).
    """
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def _unpack(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """(images, label, superlabel) from a CONTRACTS.md batch; the index is not needed."""
    if len(batch) < 3:
        raise ValueError(
            f"a batch must be (images, label, superlabel, index); got {len(batch)} items"
        )
    return batch[0], batch[1], batch[2]


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader: Iterable[Batch],
    transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> Features:
    """Run a frozen backbone over a loader and collect features and labels.

    The backbone is put in eval mode for the pass and its previous mode is restored.

    Args:
        backbone: maps (B, 3, H, W) float images to (B, D) features.
        loader: yields ``(images_uint8, label, superlabel, index)`` batches.
        transform: maps a uint8 batch on ``device`` to a normalised float batch (the eval
            augmentation). ``None`` only rescales to [0, 1].
        device: where the backbone runs.

    Returns:
        ``(feats, labels, superlabels)`` on the CPU; missing labels stay -1.

    Shape:
        feats: (N, D) float32; labels: (N,) long; superlabels: (N,) long.

    Example:
        >>> feats, y, sy = extract_features(backbone, loader, eval_aug, "cuda")
    """
    was_training = backbone.training
    backbone.eval()
    prepare = transform if transform is not None else to_float_images
    feats, labels, supers = [], [], []
    try:
        for batch in loader:
            images, label, superlabel = _unpack(batch)
            x = prepare(images.to(device, non_blocking=True))  # (B, 3, H, W) float
            feats.append(backbone(x).float().flatten(1).cpu())  # (B, D)
            labels.append(torch.as_tensor(label).long().cpu())
            supers.append(torch.as_tensor(superlabel).long().cpu())
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError("extract_features got an empty loader (no batches)")
    return torch.cat(feats), torch.cat(labels), torch.cat(supers)


def feature_cache_path(run_dir: str | Path, split: str) -> Path:
    """``<run_dir>/features/<split>.pt``."""
    if not split or "/" in split:
        raise ValueError(f"split={split!r} must be a plain name such as 'train' or 'test'")
    return Path(run_dir) / "features" / f"{split}.pt"


def save_features(
    run_dir: str | Path, split: str, feats: Tensor, labels: Tensor, superlabels: Tensor
) -> Path:
    """Write features and labels to ``<run_dir>/features/<split>.pt`` and return the path.

    Shape:
        feats: (N, D); labels: (N,); superlabels: (N,).
    """
    if not feats.shape[0] == labels.shape[0] == superlabels.shape[0]:
        raise ValueError(
            f"row counts differ: feats {feats.shape[0]}, labels {labels.shape[0]}, "
            f"superlabels {superlabels.shape[0]}"
        )
    path = feature_cache_path(run_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"feats": feats.cpu(), "labels": labels.cpu(), "superlabels": superlabels.cpu()}
    torch.save(payload, path)
    return path


def load_features(run_dir: str | Path, split: str) -> Features:
    """Read ``(feats, labels, superlabels)`` saved by :func:`save_features`.

    Raises:
        FileNotFoundError: naming the missing cache file.
    """
    path = feature_cache_path(run_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"no cached features at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["feats"], payload["labels"], payload["superlabels"]


def cached_features(
    run_dir: str | Path,
    split: str,
    backbone: nn.Module,
    loader: Iterable[Batch],
    transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
) -> Features:
    """Load ``<run_dir>/features/<split>.pt`` if present, else extract and save it.

    Shape:
        returns feats (N, D) float32, labels (N,), superlabels (N,).
    """
    if not overwrite and feature_cache_path(run_dir, split).is_file():
        return load_features(run_dir, split)
    feats, labels, supers = extract_features(backbone, loader, transform, device)
    save_features(run_dir, split, feats, labels, supers)
    return feats, labels, supers
