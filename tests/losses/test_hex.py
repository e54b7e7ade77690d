"""HEX and InfoNCE against the naive oracle, the spec 4.3 identities and analytic values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hexssl.losses import (
    FixedThreshold,
    HEXDenominator,
    InfoNCE,
    InfoNCEDenominator,
    contrastive_loss,
    simclr_pairing,
)
from hexssl.losses.thresholds import AdaptiveThreshold, SuperclassOracle

from . import oracle
from .conftest import clustered, pairing_and_sims

T = 0.1


def hex_loss(p, **kw) -> float:
    """The loss of the sparse (CPU) path; the dense (GPU) path must give the same value."""
    sparse = float(contrastive_loss(p, T, HEXDenominator(dense=False, **kw))[0])
    dense = float(contrastive_loss(p, T, HEXDenominator(dense=True, **kw))[0])
    assert dense == pytest.approx(sparse, rel=1e-12, abs=1e-12)
    return sparse


PAIRINGS = ["simclr", "cross", "queue"]


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize(
    "beta,tau,lam", list(itertools.product([0.0, 1.0, 2.5], [0.0, 0.1, 0.4], [0.0, 0.5, 1.0]))
)
def test_paper_adaptive_matches_oracle(kind, beta, tau, lam):
    p, s, pos, self_ = pairing_and_sims(kind)
    eps = oracle.adaptive_eps(s, pos, self_, 0.9, full_row=False)
    want = oracle.mean_loss(oracle.paper_anchor_loss, s, eps, pos, self_, T, beta, tau, lam)
    got = hex_loss(p, beta=beta, tau_plus=tau, lambda_local=lam, q=0.9)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("eps", [-0.5, 0.0, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("beta,tau", [(1.0, 0.1), (0.5, 0.0), (3.0, 0.3)])
def test_paper_fixed_matches_oracle(kind, eps, beta, tau):
    p, s, pos, self_ = pairing_and_sims(kind, seed=3)
    want = oracle.mean_loss(oracle.paper_anchor_loss, s, eps, pos, self_, T, beta, tau, 0.7)
    got = hex_loss(p, threshold="fixed", eps0=eps, beta=beta, tau_plus=tau, lambda_local=0.7)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
def test_paper_per_anchor_threshold_matches_oracle(kind):
    p, s, pos, self_ = pairing_and_sims(kind, seed=5)
    losses = []
    for i in range(s.shape[0]):
        vals = [s[i, j] for j in oracle.negatives(i, s.shape[1], pos, self_)]
        eps_i = oracle.nearest_quantile(vals, 0.8)
        losses.append(oracle.paper_anchor_loss(s, i, eps_i, pos, self_, T, 1.0, 0.1, 1.0))
    got = hex_loss(p, q=0.8, per_anchor=True)
    assert got == pytest.approx(sum(losses) / len(losses), rel=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_reference_adaptive_matches_oracle(kind, q):
    p, s, pos, self_ = pairing_and_sims(kind, b=16, seed=7)
    eps = oracle.adaptive_eps(s, pos, self_, q, full_row=True)
    want = oracle.mean_loss(oracle.reference_anchor_loss, s, eps, pos, self_, T, False)
    assert hex_loss(p, variant="reference", q=q) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("eps", [0.0, 0.5, 0.9, 1.0])
def test_reference_fixed_uses_minmax_rows(kind, eps):
    p, s, pos, self_ = pairing_and_sims(kind, seed=9)
    want = oracle.mean_loss(oracle.reference_anchor_loss, s, eps, pos, self_, T, True)
    got = hex_loss(p, variant="reference", threshold="fixed", eps0=eps)
    assert got == pytest.approx(want, rel=1e-10)


# ------------------------------------------------------------------ identities (4.3)
@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("eps", [-1.0, 0.0, 0.4, 0.8, 1.0])
def test_identity_uniform_no_debias_equals_infonce(kind, eps):
    p, *_ = pairing_and_sims(kind)
    plain = contrastive_loss(p, T)[0]
    hexed = contrastive_loss(
        p, T, HEXDenominator("fixed", eps0=eps, beta=0.0, tau_plus=0.0, lambda_local=1.0)
    )[0]
    assert float(hexed) == pytest.approx(float(plain), rel=1e-12)


@pytest.mark.parametrize("kind", PAIRINGS)
def test_identity_empty_neighbours_equals_infonce(kind):
    p, *_ = pairing_and_sims(kind)
    plain = float(contrastive_loss(p, T)[0])
    for beta, tau, lam in [(2.0, 0.3, 0.2), (1.0, 0.1, 1.0)]:
        d = HEXDenominator("fixed", eps0=1.0, beta=beta, tau_plus=tau, lambda_local=lam)
        assert float(contrastive_loss(p, T, d)[0]) == pytest.approx(plain, rel=1e-12)


def test_identity_warmup_equals_infonce_then_switches():
    p, *_ = pairing_and_sims("simclr")
    plain = float(contrastive_loss(p, T)[0])
    d = HEXDenominator(warmup_epochs=10, q=0.8)
    d.set_progress(9.99)
    assert float(contrastive_loss(p, T, d)[0]) == pytest.approx(plain, rel=1e-12)
    d.set_progress(10.0)
    assert float(contrastive_loss(p, T, d)[0]) != pytest.approx(plain, rel=1e-6)


def test_gradients_equal_infonce_under_identity():
    p, *_ = pairing_and_sims("simclr")
    a = p.anchors.clone().requires_grad_()
    c = p.candidates
    p1 = p._replace(anchors=a, candidates=c)
    contrastive_loss(p1, T)[0].backward()
    g_plain = a.grad.clone()
    a.grad = None
    d = HEXDenominator("fixed", eps0=0.2, beta=0.0, tau_plus=0.0)
    contrastive_loss(p1, T, d)[0].backward()
    torch.testing.assert_close(a.grad, g_plain, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- analytic
def test_infonce_analytic_orthogonal():
    # 2 images on orthogonal axes, views identical: pos sim 1, the 2 negatives sim 0.
    z = torch.eye(2, 4, dtype=torch.float64)
    loss = InfoNCE(T)(z, z)
    assert float(loss) == pytest.approx(math.log(1 + 2 * math.exp(-1 / T)), rel=1e-12)


def test_infonce_analytic_cross_with_queue():
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    loss = InfoNCE(0.5)(a, a, pairing="cross", negatives=queue)
    want = -2 + math.log(math.exp(2) + math.exp(0) + math.exp(-2))
    assert float(loss) == pytest.approx(want, rel=1e-12)


def test_small_temperature_does_not_overflow():
    z0, z1, _ = clustered(32, dtype=torch.float32)
    for d in (InfoNCEDenominator(), HEXDenominator(q=0.9), HEXDenominator(variant="reference")):
        loss = InfoNCE(0.01, d)(z0.requires_grad_(), z1)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z0.grad).all()
        z0.grad = None


@pytest.mark.parametrize("dense", [False, True])
def test_reference_keeps_g_when_the_positive_is_far_above_it(dense):
    """The reference leaves the positive out of D: its logit must not set the shift of
    sum_G e^l, or at T = 0.01 float32 underflows to log D = -inf (loss -inf)."""
    m = 6
    sim = torch.full((m, m), -0.6)
    pos = ((torch.arange(m) + m // 2) % m)[:, None]
    own = torch.arange(m)[:, None]
    sim.scatter_(1, pos, 0.99).fill_diagonal_(1.0)
    sim[0, 1] = -0.5
    den = HEXDenominator(variant="reference", dense=dense)
    got, _ = den(sim, 0.01, pos, own)
    want, _ = den(sim.double(), 0.01, pos, own)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lam", [1.0, 0.0])
@pytest.mark.parametrize("positive", [-0.6, 0.9])
def test_paper_at_small_temperature_with_a_neighbour_far_above_the_rest(lam, positive):
    """The sparse path shifts e^{l - m} by max(top, l_p), without an (M, K) max, when D
    has a local term. At T = 0.01 one neighbour per row is 155 logits above G (and above
    the positive, unless it is at 0.9): D e^{-m} must stay representable in float32, and
    with lambda = 0 (H out of D) the shift must come from G, not from top."""
    m = 6
    sim = torch.full((m, m), -0.6)
    pos = ((torch.arange(m) + m // 2) % m)[:, None]
    own = torch.arange(m)[:, None]
    sim.scatter_(1, pos, positive).scatter_(1, (own + 1) % m, 0.95).fill_diagonal_(1.0)
    den = HEXDenominator(q=0.5, lambda_local=lam, tau_plus=0.1, dense=False)
    got, want = (
        torch.autograd.functional.vjp(lambda s: den(s, 0.01, pos, own, True)[0], x, v=torch.ones(m))
        for x in (sim, sim.double())
    )
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[1]).all()
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got[1].double(), want[1], rtol=1e-4, atol=1e-3)


# -------------------------------------------------------------------- statistics
def test_stats_are_reported_and_consistent():
    z0, z1, _ = clustered(16)
    fn = InfoNCE(T, HEXDenominator(threshold="fixed", eps0=0.5))
    fn(z0, z1)
    st = fn.stats
    assert set(st) == {"eps", "neighbours", "neighbour_frac", "local_share"}
    assert float(st["eps"]) == pytest.approx(0.5)
    assert float(st["neighbour_frac"]) == pytest.approx(float(st["neighbours"]) / 30)
    assert 0.0 < float(st["local_share"]) < 1.0
    assert all(not v.requires_grad for v in st.values())


def test_superclass_oracle_neighbours_are_same_superclass():
    z0, z1, sup = clustered(10)
    p = simclr_pairing(z0, z1)
    labels = torch.cat([sup, sup])
    oracle_thr = SuperclassOracle()
    oracle_thr.set_labels(labels, labels)
    H, _ = oracle_thr(p.anchors @ p.candidates.T, p.pos_idx, p.self_idx, 0.0)
    same = labels[:, None] == labels[None, :]
    assert bool((same >= H).all())
    assert int(H.sum()) == int(same.sum()) - 2 * 20  # minus self and positive per row
    d = HEXDenominator(oracle_thr)
    assert torch.isfinite(contrastive_loss(p, T, d)[0])


def test_hex_state_is_saved_with_the_module():
    d = HEXDenominator(q=0.9, ema=0.5)
    p, *_ = pairing_and_sims("simclr")
    d.set_progress(3.5)
    contrastive_loss(p, T, d)
    d.end_step()  # the EMA is committed once per optimiser step
    state = d.state_dict()
    assert float(state["epoch"]) == 3.5 and torch.isfinite(state["threshold.ema_value"])
    d2 = HEXDenominator(q=0.9, ema=0.5)
    d2.load_state_dict(state)
    assert float(d2.threshold.ema_value) == float(d.threshold.ema_value)


def test_threshold_object_is_accepted():
    thr = FixedThreshold(0.3)
    assert HEXDenominator(thr).threshold is thr
    assert isinstance(HEXDenominator().threshold, AdaptiveThreshold)
