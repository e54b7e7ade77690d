"""Neighbour purity, neighbour sets, effective rank and the hierarchy report."""

import math

import pytest
import torch
from torch import nn

from hexssl.eval.hierarchy import (
    effective_rank,
    hierarchy_report,
    neighbour_purity,
    neighbour_sets,
    per_group_effective_rank,
    purity_counts,
)

# ---------------------------------------------------------------- purity, by hand
ANCHORS = torch.tensor([0, 1, 0])
CANDS = torch.tensor([0, 0, 1, 2])
H = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)


def test_purity_hand_computed_without_exclusion() -> None:
    res = neighbour_purity(H, ANCHORS, CANDS)
    assert res["pooled"] == pytest.approx(3 / 5)  # (2 + 1) same of (2 + 3) neighbours
    assert res["mean"] == pytest.approx((1 + 1 / 3) / 2)  # anchor 2 has no neighbours
    assert res["chance"] == pytest.approx(5 / 12)  # 2 + 1 + 2 same of 3 x 4 candidates
    assert res["mean_size"] == pytest.approx(5 / 3)
    assert res["nonempty"] == pytest.approx(2 / 3)


def test_purity_hand_computed_with_exclusion() -> None:
    exclude = torch.zeros(3, 4, dtype=torch.bool)
    exclude[0, 0] = True  # e.g. anchor 0 is candidate 0 (self)
    res = neighbour_purity(H, ANCHORS, CANDS, exclude)
    assert res["pooled"] == pytest.approx(2 / 4)
    assert res["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert res["chance"] == pytest.approx(4 / 11)


def test_purity_ignores_missing_labels_and_pools_additively() -> None:
    res = neighbour_purity(H, torch.tensor([0, -1, 0]), CANDS)
    assert res["pooled"] == pytest.approx(1.0) and res["chance"] == pytest.approx(4 / 8)
    both = purity_counts(H, ANCHORS, CANDS) + purity_counts(H, ANCHORS, CANDS)
    assert both.summary() == pytest.approx(neighbour_purity(H, ANCHORS, CANDS))


def test_purity_of_empty_neighbour_sets_is_nan_not_an_error() -> None:
    res = neighbour_purity(torch.zeros(3, 4, dtype=torch.bool), ANCHORS, CANDS)
    assert math.isnan(res["pooled"]) and math.isnan(res["mean"]) and res["mean_size"] == 0


def test_purity_rejects_a_float_mask() -> None:
    with pytest.raises(ValueError, match="bool"):
        neighbour_purity(H.float(), ANCHORS, CANDS)


# ----------------------------------------------------------------- neighbour sets
@pytest.mark.parametrize("q", [0.0, 0.125, 0.375, 0.5, 0.625, 0.99, 1.0])
def test_adaptive_eps_matches_torch_quantile_nearest(q: float) -> None:
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))  # N - 2 = 4: exact ties
    H, eps = neighbour_sets(z, q=q)
    zn = torch.nn.functional.normalize(z, dim=1)
    sim = zn @ zn.T
    off = sim[~torch.eye(6, dtype=torch.bool)].view(6, 5)
    expected = torch.quantile(off, q, dim=1, interpolation="nearest").mean()
    assert eps == pytest.approx(float(expected), abs=1e-6)
    assert torch.equal(H, (sim > eps) & ~torch.eye(6, dtype=torch.bool))


def test_adaptive_eps_on_a_larger_batch() -> None:
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    _, eps = neighbour_sets(z, q=0.99)
    zn = torch.nn.functional.normalize(z, dim=1)
    off = (zn @ zn.T)[~torch.eye(64, dtype=torch.bool)].view(64, 63)
    assert eps == pytest.approx(
        float(torch.quantile(off, 0.99, dim=1, interpolation="nearest").mean()), abs=1e-6
    )


def test_fixed_eps_and_self_is_never_a_neighbour() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    H, eps = neighbour_sets(z, eps=0.5)
    assert eps == 0.5
    assert H.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert not neighbour_sets(z, eps=1.0)[0].any()  # eps >= 1: H empty


@pytest.mark.parametrize("shape", [(1, 3), (4,)])
def test_neighbour_sets_rejects_degenerate_batches(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        neighbour_sets(torch.randn(*shape))


# ----------------------------------------------------------------- effective rank
def orthonormal(n: int, r: int, seed: int) -> torch.Tensor:
    """(n, r) float64 matrix with orthonormal columns."""
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))[0]


@pytest.mark.parametrize("r", [1, 2, 5, 8])
def test_equal_singular_values_give_exactly_the_rank(r: int) -> None:
    A = orthonormal(20, r, 0) @ orthonormal(12, r, 1).T  # (20, 12), r singular values = 1
    assert effective_rank(A, centre=False) == pytest.approx(r, abs=1e-9)
    sym = torch.cat([A, -A])  # zero column mean: centring changes nothing
    assert effective_rank(sym) == pytest.approx(r, abs=1e-9)


def test_float32_round_off_does_not_inflate_the_rank() -> None:
    A = (orthonormal(50, 3, 7) @ orthonormal(40, 3, 8).T).float()
    assert effective_rank(A, centre=False) == pytest.approx(3.0, abs=1e-5)


def test_rank_one_and_known_spectrum() -> None:
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(30, 1, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 7, generator=gen, dtype=torch.float64)
    assert effective_rank(u @ v, centre=False) == pytest.approx(1.0, abs=1e-9)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-9)  # centred: still one direction
    X = torch.diag(torch.tensor([3.0, 1.0]))  # p = (0.75, 0.25)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(X, centre=False) == pytest.approx(expected)


def test_collapsed_inputs() -> None:
    constant = torch.ones(10, 4) * 3.0
    assert effective_rank(constant) == 0.0  # centred: nothing left
    assert effective_rank(constant, centre=False) == pytest.approx(1.0)
    assert effective_rank(torch.zeros(5, 3), centre=False) == 0.0


def test_per_group_effective_rank() -> None:
    a = orthonormal(10, 2, 3) @ orthonormal(6, 2, 4).T
    b = orthonormal(10, 4, 5) @ orthonormal(6, 4, 6).T
    X = torch.cat([a, -a, b, -b])  # group 0 rank 2, group 1 rank 4, both zero-mean
    groups = torch.tensor([0] * 20 + [1] * 20)
    res = per_group_effective_rank(X, groups)
    assert res["0"] == pytest.approx(2.0, abs=1e-9) and res["1"] == pytest.approx(4.0, abs=1e-9)
    assert set(res) == {"global", "0", "1"} and res["global"] > 4.0 - 1e-9


# ---------------------------------------------------------------- hierarchy report
def hierarchical_features(n: int, seed: int):
    """4 superclasses x 3 classes: superclass centres far apart, classes closer."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 12
    supers = labels // 3
    super_c = torch.randn(4, 32, generator=gen) * 4.0
    class_c = torch.randn(12, 32, generator=gen) * 1.0
    return (
        super_c[supers] + class_c[labels] + 0.3 * torch.randn(n, 32, generator=gen),
        labels,
        supers,
    )


def test_hierarchy_report_from_features() -> None:
    feats, y, sy = hierarchical_features(512, 0)
    rep = hierarchy_report(feats, labels=y, superlabels=sy, batch_size=128, q=0.9)
    assert rep["purity_super"] > 0.95 > rep["purity_super_chance"]
    assert rep["purity_super_chance"] == pytest.approx(31 / 127, abs=0.02)
    assert rep["purity_class_chance"] == pytest.approx(10 / 127, abs=0.02)
    assert rep["purity_class"] > rep["purity_class_chance"]
    assert 0.05 < rep["neighbour_frac"] < 0.2  # about 1 - q of the batch
    assert {f"erank_super/{g}" for g in range(4)} <= set(rep)
    for g in range(4):
        assert 1.0 <= rep[f"erank_super/{g}"] <= 32.0
    assert rep["erank_super_mean"] == pytest.approx(
        sum(rep[f"erank_super/{g}"] for g in range(4)) / 4
    )


class CountingFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.flatten(1)


def test_hierarchy_report_from_backbone_and_loader_matches_features() -> None:
    feats, y, sy = hierarchical_features(64, 1)
    images = (feats - feats.min()).mul(255 / (feats.max() - feats.min())).round()  # (N, 32)
    images = images.to(torch.uint8).view(64, 2, 4, 4).repeat(1, 2, 1, 1)[:, :3]  # (N, 3, 4, 4)
    loader = [
        (images[i : i + 16], y[i : i + 16], sy[i : i + 16], torch.arange(i, i + 16))
        for i in range(0, 64, 16)
    ]
    rep = hierarchy_report(CountingFlatten(), loader, batch_size=32)
    flat = images.float().div(255).flatten(1)
    assert rep == pytest.approx(
        hierarchy_report(flat, labels=y, superlabels=sy, batch_size=32), nan_ok=True
    )


def test_hierarchy_report_needs_labels_or_loader() -> None:
    with pytest.raises(ValueError, match="labels="):
        hierarchy_report(torch.randn(8, 4))
    with pytest.raises(ValueError, match="loader="):
        hierarchy_report(nn.Identity())


def test_per_group_effective_rank_skips_missing_and_tiny_groups() -> None:
    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, -1, -1, 1, 2])  # group 1 and 2 have one row each
    res = per_group_effective_rank(X, groups)
    assert set(res) == {"global", "0"}
    assert res["0"] == pytest.approx(effective_rank(X[:3]))
    with pytest.raises(ValueError, match="groups has 3"):
        per_group_effective_rank(X, groups[:3])
