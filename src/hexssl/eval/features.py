"""Frozen-backbone feature extraction and an on-disk feature cache.

Batches follow CONTRACTS.md: ``(images_uint8 (B,3,H,W), label (B,), superlabel (B,),
index (B,))``. The cache lives at ``<run_dir>/features/<split>.pt`` so that kNN, linear
probes and hierarchy reports can run again without touching the backbone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.run.atomic import atomic_torch_save

Batch = Sequence[Tensor]
Features = tuple[Tensor, Tensor, Tensor]  # feats (N, D) float32, labels (N,), superlabels (N,)
log = logging.getLogger("hexssl")


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
        >>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8))
        >>> images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
        >>> idx = torch.arange(10)
        >>> loader = [(images[:6], idx[:6] % 5, idx[:6] % 2, idx[:6]),
        ...           (images[6:], idx[6:] % 5, idx[6:] % 2, idx[6:])]
        >>> feats, y, sy = extract_features(backbone, loader)  # a GPU: device="cuda"
        >>> tuple(feats.shape), y.tolist(), sy.tolist()
        ((10, 8), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4], [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
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


def file_identity(path: str | Path) -> dict[str, Any]:
    """Content identity of a file (size and SHA-256), e.g. the checkpoint features came from.

    A resumed run rewrites ``last.ckpt`` in place; its path and tag stay the same but
    this identity changes, so a feature cache keyed by it is never stale.
    """
    p = Path(path)
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"size": p.stat().st_size, "sha256": digest.hexdigest()}


def save_features(
    run_dir: str | Path,
    split: str,
    feats: Tensor,
    labels: Tensor,
    superlabels: Tensor,
    key: dict[str, Any] | None = None,
) -> Path:
    """Write features and labels to ``<run_dir>/features/<split>.pt`` atomically.

    ``key`` (JSON-serialisable, e.g. checkpoint identity and data config) is stored with
    them; :func:`cached_features` re-extracts when it differs.

    Shape:
        feats: (N, D); labels: (N,); superlabels: (N,).
    """
    if not feats.shape[0] == labels.shape[0] == superlabels.shape[0]:
        raise ValueError(
            f"row counts differ: feats {feats.shape[0]}, labels {labels.shape[0]}, "
            f"superlabels {superlabels.shape[0]}"
        )
    path = feature_cache_path(run_dir, split)
    payload = {
        "feats": feats.cpu(),
        "labels": labels.cpu(),
        "superlabels": superlabels.cpu(),
        "key": json.dumps(key, sort_keys=True),
    }
    atomic_torch_save(payload, path)
    return path


def load_features(run_dir: str | Path, split: str, key: dict[str, Any] | None = None) -> Features:
    """Read ``(feats, labels, superlabels)`` saved by :func:`save_features`.

    Raises:
        FileNotFoundError: naming the missing cache file.
        StaleCacheError: the file is unreadable (e.g. truncated) or was written for a
            different ``key``.
    """
    path = feature_cache_path(run_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"no cached features at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        out = payload["feats"], payload["labels"], payload["superlabels"]
        stored = payload.get("key")
    except Exception as err:  # truncated, corrupt or foreign file: any unpickling error
        raise StaleCacheError(f"unreadable feature cache {path}: {err}") from None
    if stored != json.dumps(key, sort_keys=True):
        raise StaleCacheError(f"feature cache {path} was written for another checkpoint/data")
    return out


class StaleCacheError(RuntimeError):
    """A feature cache that must be rebuilt (unreadable, or for another checkpoint)."""


def cached_features(
    run_dir: str | Path,
    split: str,
    backbone: nn.Module,
    loader: Iterable[Batch],
    transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    key: dict[str, Any] | None = None,
) -> Features:
    """Load ``<run_dir>/features/<split>.pt`` if it matches ``key``, else extract and save.

    A cache that is unreadable (truncated by a kill) or was written for another ``key``
    (another checkpoint, other data) is rebuilt.

    Shape:
        returns feats (N, D) float32, labels (N,), superlabels (N,).
    """
    if not overwrite and feature_cache_path(run_dir, split).is_file():
        try:
            return load_features(run_dir, split, key)
        except StaleCacheError as err:
            log.info("%s; extracting again", err)
    feats, labels, supers = extract_features(backbone, loader, transform, device)
    save_features(run_dir, split, feats, labels, supers, key)
    return feats, labels, supers
