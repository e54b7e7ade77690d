"""Weighted kNN: known answers on synthetic features and a naive oracle."""

import pytest
import torch
import torch.nn.functional as F

from hexssl.eval.knn import knn_eval


def gaussian_clusters(n: int, num_classes: int, dim: int, spread: float, seed: int):
    """Samples around fixed random centres; the centres depend only on the seed."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=gen) * spread  # (C, D)
    labels = torch.arange(n) % num_classes  # (N,) balanced
    return centres[labels] + torch.randn(n, dim, generator=gen), labels


def naive_knn_top1(train, train_y, test, test_y, k, T, C) -> float:
    """Loop-per-query reference from the equations of Wu et al. 2018."""
    train_n, test_n = F.normalize(train, dim=1), F.normalize(test, dim=1)
    correct = 0
    for q, y in zip(test_n, test_y):
        sims = train_n @ q  # (N,)
        top = sims.topk(k)
        votes = torch.zeros(C)
        for s, j in zip(top.values, top.indices):
            votes[train_y[j]] += torch.exp(s / T)
        correct += int(votes.argmax() == y)
    return 100.0 * correct / len(test_y)


def test_separated_clusters_are_classified_almost_perfectly() -> None:
    x, y = gaussian_clusters(1200, 10, 32, spread=3.0, seed=0)
    res = knn_eval(x[:1000], y[:1000], x[1000:], y[1000:], k=(10, 20), T=(0.07, 0.5))
    assert res["top1"] > 95.0 and res["top5"] >= res["top1"]
    assert set(res) >= {"k10_T0.07_top1", "k20_T0.5_top5", "best_top1", "top1", "top5"}


def test_random_labels_give_chance_accuracy() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 16, generator=gen)
    y = torch.randint(0, 10, (3000,), generator=gen)
    res = knn_eval(x[:2000], y[:2000], x[2000:], y[2000:])
    assert abs(res["top1"] - 10.0) < 4.0  # 1000 queries: binomial std ~ 1 point
    assert abs(res["top5"] - 50.0) < 8.0


def test_matches_naive_oracle_and_is_chunk_invariant() -> None:
    x, y = gaussian_clusters(300, 5, 8, spread=0.7, seed=2)
    expected = naive_knn_top1(x[:200], y[:200], x[200:], y[200:], k=7, T=0.1, C=5)
    for chunk in (1, 13, 1000):
        res = knn_eval(x[:200], y[:200], x[200:], y[200:], k=(7,), T=(0.1,), chunk_size=chunk)
        assert res["top1"] == pytest.approx(expected)


def test_top5_with_fewer_than_five_classes_is_perfect() -> None:
    x, y = gaussian_clusters(100, 3, 4, spread=0.1, seed=3)
    res = knn_eval(x[:50], y[:50], x[50:], y[50:], k=(5,))
    assert res["top5"] == 100.0  # top-min(5, C) = top-3 always contains the label


def test_missing_labels_are_ignored_and_k_larger_than_bank_is_clipped() -> None:
    x, y = gaussian_clusters(60, 3, 8, spread=3.0, seed=4)
    y_train = y[:40].clone()
    y_train[:5] = -1
    res = knn_eval(x[:40], y_train, x[40:], y[40:], k=(1000,), T=(0.07,))
    assert res["top5"] == 100.0 and res["top1"] > 90.0


def test_tiny_temperature_does_not_overflow() -> None:
    x, y = gaussian_clusters(200, 4, 8, spread=3.0, seed=5)
    res = knn_eval(x[:150], y[:150], x[150:], y[150:], T=(1e-4,))
    assert res["top1"] > 95.0


@pytest.mark.parametrize(("k", "T"), [((), (0.1,)), ((0,), (0.1,)), ((5,), (0.0,))])
def test_bad_sweep_values_are_named(k, T) -> None:
    x, y = gaussian_clusters(20, 2, 4, spread=1.0, seed=6)
    with pytest.raises(ValueError, match=r"k=|T="):
        knn_eval(x, y, x, y, k=k, T=T)


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="feature dims"):
        knn_eval(torch.randn(4, 3), torch.zeros(4).long(), torch.randn(2, 5), torch.zeros(2).long())
