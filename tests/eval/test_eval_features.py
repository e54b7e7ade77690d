"""Feature extraction and the on-disk feature cache."""

from pathlib import Path

import pytest
import torch
from torch import nn

from hexssl.eval.features import (
    cached_features,
    extract_features,
    feature_cache_path,
    load_features,
)


class MeanPool(nn.Module):
    """(B, 3, H, W) -> (B, 3); records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.saw_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.saw_training.append(self.training)
        return x.mean(dim=(2, 3))


def make_loader(n: int = 10, batch: int = 4):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 5, 5), generator=gen, dtype=torch.uint8)
    labels, supers = torch.arange(n) % 3, torch.full((n,), -1)
    return (
        [
            (
                images[i : i + batch],
                labels[i : i + batch],
                supers[i : i + batch],
                torch.arange(i, min(i + batch, n)),
            )
            for i in range(0, n, batch)
        ],
        images,
        labels,
    )


def test_extract_features_uses_transform_eval_mode_and_restores_training() -> None:
    loader, images, labels = make_loader()
    model = MeanPool().train()
    feats, y, sy = extract_features(model, loader, lambda x: x.float() * 2.0, "cpu")
    assert feats.shape == (10, 3) and feats.dtype == torch.float32
    assert torch.allclose(feats, images.float().mean(dim=(2, 3)) * 2.0)
    assert torch.equal(y, labels) and (sy == -1).all()
    assert model.saw_training == [False] * 3 and model.training
    assert not feats.requires_grad


def test_default_transform_rescales_uint8() -> None:
    loader, images, _ = make_loader()
    feats, _, _ = extract_features(MeanPool(), loader, None)
    assert torch.allclose(feats, images.float().div(255).mean(dim=(2, 3)))


def test_cache_round_trip_and_reuse(tmp_path: Path) -> None:
    loader, _, _ = make_loader()
    model = MeanPool()
    first = cached_features(tmp_path, "train", model, loader)
    assert feature_cache_path(tmp_path, "train") == tmp_path / "features" / "train.pt"
    assert model.calls == 3
    second = cached_features(tmp_path, "train", model, loader)
    assert model.calls == 3  # served from the cache
    for a, b, c in zip(first, second, load_features(tmp_path, "train")):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_missing_cache_and_empty_loader_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"test\.pt"):
        load_features(tmp_path, "test")
    with pytest.raises(ValueError, match="empty loader"):
        extract_features(MeanPool(), [], None)
