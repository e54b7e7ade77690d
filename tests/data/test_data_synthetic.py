"""The synthetic hierarchical dataset: deterministic, balanced, classes distinct."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hexssl.data import build_dataset, make_synthetic


def test_shapes_and_balance() -> None:
    ds = make_synthetic("train", n_per_class=8)
    assert ds.images.shape == (160, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 20 and ds.num_superclasses == 5
    assert torch.bincount(ds.labels).tolist() == [8] * 20
    assert torch.equal(ds.superlabels, ds.labels // 4)


def test_deterministic_and_splits_differ() -> None:
    a = make_synthetic("train", n_per_class=4, seed=3)
    b = build_dataset("synthetic", None, "train", n_per_class=4, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)  # type: ignore[attr-defined]
    assert not torch.equal(a.images, make_synthetic("val", n_per_class=4, seed=3).images)
    assert not torch.equal(a.images, make_synthetic("train", n_per_class=4, seed=4).images)


def centroid_accuracy(labels_name: str) -> float:
    """Nearest-centroid accuracy on raw pixels, train centroids -> val images."""
    tr, va = make_synthetic("train", n_per_class=40), make_synthetic("val", n_per_class=20)

    def feats(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.flatten(1).float() - x.flatten(1).float().mean(1, keepdim=True), dim=1)

    ytr, yva = getattr(tr, labels_name), getattr(va, labels_name)
    cents = torch.stack([feats(tr.images)[ytr == c].mean(0) for c in range(int(ytr.max()) + 1)])
    return (feats(va.images) @ cents.T).argmax(1).eq(yva).float().mean().item()


def test_superclass_easier_than_class_and_both_above_chance() -> None:
    acc_super, acc_class = centroid_accuracy("superlabels"), centroid_accuracy("labels")
    assert acc_super > 0.9  # chance 0.2
    assert 0.1 < acc_class < acc_super  # chance 0.05: distinct but not trivial


def test_class_means_distinct() -> None:
    ds = make_synthetic("train", n_per_class=30)
    means = torch.stack([ds.images[ds.labels == c].float().mean(0) for c in range(20)])
    dist = torch.cdist(means.flatten(1), means.flatten(1))
    assert dist[~torch.eye(20, dtype=torch.bool)].min() > 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="valid splits"):
        make_synthetic("holdout")
    with pytest.raises(ValueError, match="n_super=9"):
        make_synthetic(n_super=9)


def pixel_knn_super(**difficulty: float) -> float:
    """Superclass accuracy of a 5-NN on 8 x 8 pooled raw pixels (no learning)."""
    train = make_synthetic("train", n_per_class=30, **difficulty)
    val = make_synthetic("val", n_per_class=10, **difficulty)

    def feats(images: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images.float(), 4).flatten(1) - 128  # (N, 192)
        return F.normalize(x, dim=1)

    nearest = (feats(val.images) @ feats(train.images).T).topk(5, dim=1).indices  # (n, 5)
    pred = train.superlabels[nearest].mode(dim=1).values
    return float((pred == val.superlabels).float().mean())


def test_difficulty_knobs_hide_the_superclass_cue() -> None:
    assert pixel_knn_super() > 0.95  # default: colour and texture give it away
    assert pixel_knn_super(hue_spread=0.5) < 0.6  # no colour cue
    assert pixel_knn_super(hue_spread=0.5, texture_strength=0.0) < 0.3  # chance: 0.2
    with pytest.raises(ValueError, match=r"hue_spread=0\.7"):
        make_synthetic("val", n_per_class=1, hue_spread=0.7)
