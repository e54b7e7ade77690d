"""Thresholds: exact nearest-rank quantiles, schedules, EMA state."""

from __future__ import annotations

import math

import pytest
import torch

from hexssl.losses import HEXDenominator
from hexssl.losses.thresholds import (
    AdaptiveThreshold,
    FixedThreshold,
    build_threshold,
    exclusion_fill,
    row_quantile,
)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 51, 100, 255, 512])
@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.99])
def test_row_quantile_matches_torch_quantile_nearest(n, q):
    x = torch.randn(5, n, dtype=torch.float64)
    want = torch.quantile(x, q, dim=1, interpolation="nearest")
    torch.testing.assert_close(row_quantile(x, n, q), want)


def test_adaptive_excludes_self_and_positive():
    torch.manual_seed(0)
    s = torch.rand(6, 6) * 0.5
    s.fill_diagonal_(1.0)
    pos = torch.arange(6).roll(3)[:, None]
    s.scatter_(1, pos, 0.99)
    own = torch.arange(6)[:, None]
    H, eps = AdaptiveThreshold(q=0.99)(s, pos, own, 0.0)
    rows = [s[i][[j for j in range(6) if j not in (i, int(pos[i]))]] for i in range(6)]
    want = torch.stack([torch.quantile(r, 0.99, interpolation="nearest") for r in rows]).mean()
    assert float(eps) == pytest.approx(float(want))
    assert not H.gather(1, pos).any() and not H.gather(1, own).any()
    _, eps_full = AdaptiveThreshold(q=0.99, include_self_positive=True)(s, pos, own, 0.0)
    assert float(eps_full) == pytest.approx(1.0)  # the reference's quantile sees self


def test_adaptive_is_independent_of_batch_size_for_iid_rows():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(4096, 8), dim=1)
    eps = []
    for b in (128, 1024):
        s = z[: 2 * b] @ z[: 2 * b].T
        n = 2 * b
        pos = ((torch.arange(n) + b) % n)[:, None]
        eps.append(float(AdaptiveThreshold(q=0.9)(s, pos, torch.arange(n)[:, None], 0.0)[1]))
    assert eps[0] == pytest.approx(eps[1], abs=0.03)


def test_per_anchor_threshold_shape():
    s = torch.rand(8, 8)
    _, eps = AdaptiveThreshold(per_anchor=True)(s, torch.arange(8).roll(1)[:, None], None, 0.0)
    assert eps.shape == (8, 1)


def test_ema_follows_the_recurrence_and_only_in_training():
    thr = AdaptiveThreshold(q=0.5, ema=0.9)
    pos = torch.arange(4).roll(2)[:, None]
    s1, s2 = torch.full((4, 4), 0.2), torch.full((4, 4), 0.6)
    assert float(thr(s1, pos, None, 0)[1]) == pytest.approx(0.2)
    thr.end_step()
    assert float(thr(s2, pos, None, 0)[1]) == pytest.approx(0.9 * 0.2 + 0.1 * 0.6)
    thr.end_step()
    assert float(thr.ema_value) == pytest.approx(0.9 * 0.2 + 0.1 * 0.6)
    thr.eval()
    before = float(thr.ema_value)
    thr(s2, pos, None, 0)
    assert float(thr.ema_value) == before


@pytest.mark.parametrize("epoch,want", [(0, 0.9), (99.9, 0.9), (100, 0.8), (250, 0.7), (1000, 0.4)])
def test_step_schedule(epoch, want):
    thr = FixedThreshold(0.9, "step", step_down=0.1, epoch_step=100, eps_min=0.4)
    assert thr.value(epoch) == pytest.approx(want)


def test_cosine_schedule_end_points_and_midpoint():
    thr = FixedThreshold(0.9, "cosine", eps_min=0.3, max_epochs=100)
    assert thr.value(0) == pytest.approx(0.9)
    assert thr.value(50) == pytest.approx(0.6)
    assert thr.value(100) == pytest.approx(0.3)
    assert thr.value(150) == pytest.approx(0.3)
    assert thr.value(25) == pytest.approx(0.3 + 0.6 * (1 + math.cos(math.pi / 4)) / 2)


def test_schedule_is_pure_in_progress():
    thr = FixedThreshold(0.9, "step", epoch_step=10, eps_min=0.1)
    values = [thr.value(e) for e in (35, 5, 35)]
    assert values[0] == values[2] and values[1] == 0.9


def test_build_threshold_unknown_lists_valid():
    with pytest.raises(ValueError, match=r"adaptive.*fixed"):
        build_threshold("Hex_adaptive")


@pytest.mark.parametrize("two_stage", [True, False])  # False: narrow rows' one top-k
@pytest.mark.parametrize("per_anchor", [False, True])
@pytest.mark.parametrize("spread", ["uniform", "one_cluster"])
@pytest.mark.parametrize("n_img", [256, 251, 1024])  # 2B = 502 is not a multiple of 8
def test_sparse_neighbours_equal_dense_mask(per_anchor, spread, n_img, two_stage, monkeypatch):
    # "one_cluster": a third of the batch is near-identical, so those rows have far more
    # neighbours than the top-k window and the dense fallback must take over.
    if two_stage:  # the block top-k of wide rows, at these small sizes
        monkeypatch.setattr("hexssl.losses.thresholds.TWO_STAGE_MIN_WIDTH", 0)
    torch.manual_seed(1)
    z = torch.randn(n_img, 16)
    if spread == "one_cluster":
        z[:80] = z[0] + 0.01 * torch.randn(80, 16)
    z = torch.nn.functional.normalize(z, dim=1)
    s = z @ z.T
    n = s.shape[0]
    pos = ((torch.arange(n) + n // 2) % n)[:, None]
    own = torch.arange(n)[:, None]
    thr = AdaptiveThreshold(q=0.99, per_anchor=per_anchor)
    H, eps = thr(s, pos, own, 0.0, 0.1)
    masked = exclusion_fill(s / 0.1, pos, own, float("-inf"))
    flat, eps2, top = thr.neighbours(s, pos, own, 0.0, 0.1, masked)
    assert flat.numel() == int(H.sum())  # each neighbour once
    assert top is not None and torch.equal(top, masked.amax(1))  # the local term's shift
    sparse = torch.zeros_like(H)
    sparse.view(-1)[flat] = True
    assert torch.equal(sparse, H)
    torch.testing.assert_close(eps2, eps)
    if spread == "one_cluster" and not per_anchor:
        assert int(H.sum(1).max()) > 4 * (n - 2 - round(0.99 * (n - 3)))  # beyond the window


def test_ema_advances_once_per_step_with_the_mean_of_its_calls():
    """Two loss calls in one step (MoCo, NNCLR): one update, by their mean (issue 10)."""
    thr = AdaptiveThreshold(q=0.5, ema=0.5)
    pos = torch.arange(4).roll(2)[:, None]
    for value in (0.2, 0.4):  # step 1 seeds the EMA with the mean 0.3
        thr(torch.full((4, 4), value), pos, None, 0)
    thr.end_step()
    assert float(thr.ema_value) == pytest.approx(0.3)
    first = float(thr(torch.full((4, 4), 0.8), pos, None, 0)[1])
    second = float(thr(torch.full((4, 4), 0.8), pos, None, 0)[1])
    assert first == second == pytest.approx(0.5 * 0.3 + 0.5 * 0.8)  # same committed value
    thr.end_step()
    assert float(thr.ema_value) == pytest.approx(0.55)


def test_ema_does_not_advance_during_warmup():
    hexd = HEXDenominator("adaptive", q=0.5, ema=0.9, warmup_epochs=1.0)
    s = torch.full((4, 4), 0.3)
    pos = torch.arange(4).roll(2)[:, None]
    hexd.set_progress(0.5)
    hexd(s, 0.1, pos, None)
    hexd.end_step()
    assert torch.isnan(hexd.threshold.ema_value)
    hexd.set_progress(1.5)
    hexd(s, 0.1, pos, None)
    hexd.end_step()
    assert float(hexd.threshold.ema_value) == pytest.approx(0.3)
