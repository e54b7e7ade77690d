"""Linear probe and class-balanced label subsets."""

import pytest
import torch

from hexssl.eval.linear import balanced_subset, linear_eval, split_train_val, train_linear
from hexssl.eval.metrics import topk_accuracy


def gaussian_clusters(n: int, num_classes: int, dim: int, spread: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=gen) * spread  # (C, D)
    labels = torch.arange(n) % num_classes  # (N,)
    return centres[labels] + torch.randn(n, dim, generator=gen) + 5.0, labels  # offset: standardise


def test_balanced_subset_counts_per_class() -> None:
    labels = torch.arange(1000) % 10  # 100 per class
    for fraction, per_class in ((1.0, 100), (0.1, 10), (0.01, 1), (0.001, 1)):
        idx = balanced_subset(labels, fraction, seed=0)
        counts = torch.bincount(labels[idx], minlength=10)
        assert counts.tolist() == [per_class] * 10
        assert idx.unique().numel() == idx.numel()


def test_balanced_subset_is_stratified_on_imbalanced_labels_and_skips_missing() -> None:
    labels = torch.cat([torch.zeros(200), torch.ones(20), torch.full((3,), 2), -torch.ones(50)])
    idx = balanced_subset(labels.long(), 0.1, seed=0)
    assert torch.bincount(labels.long()[idx]).tolist() == [20, 2, 1]  # at least 1 per class


def test_balanced_subset_seeding() -> None:
    labels = torch.arange(500) % 5
    a, b = balanced_subset(labels, 0.1, seed=3), balanced_subset(labels, 0.1, seed=3)
    c = balanced_subset(labels, 0.1, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_balanced_subset_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=f"fraction={fraction}"):
        balanced_subset(torch.arange(10), fraction, seed=0)


def test_separated_clusters_reach_high_accuracy_at_every_fraction() -> None:
    x, y = gaussian_clusters(2500, 10, 32, spread=3.0, seed=0)
    res = linear_eval(x[:2000], y[:2000], x[2000:], y[2000:], epochs=50)
    for key in ("100pct", "10pct", "1pct"):
        assert res[f"{key}_top1"] > 95.0, res
        assert res[f"{key}_top5"] >= res[f"{key}_top1"]
    assert res["100pct_n"] == 2000 and res["10pct_n"] == 200 and res["1pct_n"] == 20


def test_random_labels_give_chance_accuracy() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 16, generator=gen)
    y = torch.randint(0, 10, (3000,), generator=gen)
    res = linear_eval(x[:2000], y[:2000], x[2000:], y[2000:], fractions=(1.0,), epochs=10)
    assert abs(res["100pct_top1"] - 10.0) < 4.0
    assert abs(res["100pct_top5"] - 50.0) < 8.0


def test_weight_decay_sweep_picks_a_candidate_and_full_batch_sgd_works() -> None:
    x, y = gaussian_clusters(600, 4, 8, spread=3.0, seed=2)
    res = linear_eval(
        x[:500], y[:500], x[500:], y[500:], fractions=(1.0, 0.01), epochs=30, lr=0.1,
        batch_size=None, optimizer="sgd", weight_decays=(1e-4, 1.0),
    )  # fmt: skip
    assert res["100pct_wd"] in (1e-4, 1.0) and res["100pct_top1"] > 90.0
    assert res["1pct_wd"] == 1e-4  # one label per class: nothing to validate on, first value


def test_probe_is_deterministic_given_the_seed() -> None:
    x, y = gaussian_clusters(200, 4, 8, spread=1.0, seed=3)
    a = train_linear(x, y, 4, epochs=3, seed=7).weight
    b = train_linear(x, y, 4, epochs=3, seed=7).weight
    assert torch.equal(a, b)


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="'lbfgs'"):
        train_linear(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), 2, optimizer="lbfgs")


def test_split_train_val_is_disjoint_and_covers_everything() -> None:
    labels = torch.arange(103) % 10
    tr, va = split_train_val(labels, 0.2, seed=0)
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(103))
    assert va.numel() == 20


def test_topk_accuracy_clips_k_to_the_number_of_classes() -> None:
    scores = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([2, 2])
    assert topk_accuracy(scores, labels) == {"top1": 50.0, "top5": 100.0}


def test_linear_eval_names_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="5 train features but 4 labels"):
        linear_eval(
            torch.randn(5, 3), torch.zeros(4).long(), torch.randn(2, 3), torch.zeros(2).long()
        )
