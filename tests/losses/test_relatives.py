"""HEX's relatives (decoupled, debiased, hard) against their papers' naive oracles.

Also: float64 gradcheck, the identities that tie them to InfoNCE, degenerate inputs and
argument errors. The two-process test is in test_distributed.py.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from hexssl.losses import (
    DebiasedDenominator,
    DecoupledDenominator,
    HardNegativeDenominator,
    HEXDenominator,
    InfoNCE,
    InfoNCEDenominator,
    contrastive_loss,
)
from hexssl.losses.infonce import simclr_pairing
from hexssl.losses.memory import saved_square_tensors
from hexssl.losses.relatives import vmf_weights
from hexssl.run.hostsync import sync_free_paths

from . import oracle
from . import oracle_relatives as rel
from .conftest import clustered, pairing_and_sims

PAIRINGS = ["simclr", "cross", "queue"]
B = 10  # samples a view


def loss_of(p, t: float, den: torch.nn.Module) -> float:
    return float(contrastive_loss(p, t, den)[0])


# ------------------------------------------------------------------------- decoupled
@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("t", [0.05, 0.1, 0.5])
def test_decoupled_matches_oracle(kind, t):
    p, s, pos, self_ = pairing_and_sims(kind, B, seed=1)
    want = oracle.mean_loss(rel.dcl_anchor_loss, s, pos, self_, t)
    assert loss_of(p, t, DecoupledDenominator()) == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("sigma", [0.2, 0.5, 2.0])
def test_decoupled_weighted_matches_oracle(kind, sigma):
    p, s, pos, self_ = pairing_and_sims(kind, B, seed=2)
    w = rel.vmf_weights(s, pos, sigma)
    want = sum(rel.dcl_anchor_loss(s, i, pos, self_, 0.1, w[i]) for i in range(len(w))) / len(w)
    got = loss_of(p, 0.1, DecoupledDenominator(sigma=sigma))
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_vmf_weights_have_mean_one_and_favour_hard_positives():
    pos_sim = torch.tensor([0.9, 0.1, -0.3, 0.5], dtype=torch.float64)
    w = vmf_weights(pos_sim, 0.5)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-12)
    assert torch.equal(w.argsort(), pos_sim.argsort(descending=True))  # harder: heavier


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("t", [0.05, 0.2, 1.0])
def test_decoupled_never_exceeds_infonce(kind, seed, t):
    """log sum_N e^l < log(e^{l_p} + sum_N e^l), anchor by anchor, so also on average."""
    p, _, _, _ = pairing_and_sims(kind, B, seed=seed)
    sim = F.normalize(p.anchors, dim=1) @ F.normalize(p.candidates, dim=1).T
    dcl = DecoupledDenominator()(sim, t, p.pos_idx, p.self_idx)[0]
    plain = InfoNCEDenominator()(sim, t, p.pos_idx, p.self_idx)[0]
    assert bool((dcl < plain).all())
    assert loss_of(p, t, DecoupledDenominator()) < loss_of(p, t, InfoNCEDenominator())


def test_decoupled_analytic_two_pairs():
    """B = 2, orthogonal images: l_p = 1/T, N(i) = the two views of the other image (0)."""
    t = 0.5
    z = torch.eye(2, dtype=torch.float64)
    loss = InfoNCE(t, DecoupledDenominator())(z, z)
    assert float(loss) == pytest.approx(-1 / t + math.log(2.0), rel=1e-12)


# ------------------------------------------------------------------ debiased, hard
@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("t", [0.1, 0.5])
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.4, 0.9])
def test_debiased_matches_oracle(kind, t, tau):
    p, s, pos, self_ = pairing_and_sims(kind, B, seed=3)
    want = oracle.mean_loss(rel.hcl_anchor_loss, s, pos, self_, t, 0.0, tau)
    got = loss_of(p, t, DebiasedDenominator(tau_plus=tau))
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("t", [0.1, 0.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.5])
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.6])
def test_hard_matches_oracle(kind, t, beta, tau):
    p, s, pos, self_ = pairing_and_sims(kind, B, seed=4)
    want = oracle.mean_loss(rel.hcl_anchor_loss, s, pos, self_, t, beta, tau)
    got = loss_of(p, t, HardNegativeDenominator(beta=beta, tau_plus=tau))
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("den", [DebiasedDenominator(0.3), HardNegativeDenominator(1.0, 0.7)])
def test_the_floor_is_reached_and_counted(den):
    """A large tau_plus drives the estimate below N e^{-1/T} for some anchors, not all."""
    p, s, pos, self_ = pairing_and_sims("simclr", B, seed=0)
    loss, stats = contrastive_loss(p, 0.5, den)
    est = [rel.hcl_estimate(s, i, pos, self_, 0.5, den.beta, den.tau_plus) for i in range(len(s))]
    at_floor = sum(raw < floor for raw, floor in est) / len(est)
    assert 0 < at_floor < 1 and float(stats["floor_share"]) == pytest.approx(at_floor)
    want = oracle.mean_loss(rel.hcl_anchor_loss, s, pos, self_, 0.5, den.beta, den.tau_plus)
    assert float(loss) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("t", [0.05, 0.2])
def test_hard_with_beta_0_and_tau_0_is_infonce(kind, t):
    p, _, _, _ = pairing_and_sims(kind, B, seed=5)
    want = loss_of(p, t, InfoNCEDenominator())
    assert loss_of(p, t, HardNegativeDenominator(beta=0.0, tau_plus=0.0)) == pytest.approx(
        want, rel=1e-12
    )
    assert loss_of(p, t, DebiasedDenominator(tau_plus=0.0)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_hard_with_beta_0_is_debiased(kind, tau):
    p, _, _, _ = pairing_and_sims(kind, B, seed=6)
    want = loss_of(p, 0.2, DebiasedDenominator(tau_plus=tau))
    got = loss_of(p, 0.2, HardNegativeDenominator(beta=0.0, tau_plus=tau))
    assert got == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------ the tie to HEX
@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("beta,tau", [(0.0, 0.0), (0.0, 0.3), (1.0, 0.1), (2.0, 0.0)])
def test_hex_with_every_negative_a_neighbour_is_hard(kind, beta, tau):
    """HEX_SPEC 4.2 with H(i) = N(i) (eps below -1) and lambda = 1 is HCL's denominator."""
    p, _, _, _ = pairing_and_sims(kind, B, seed=7)
    hex_den = HEXDenominator("fixed", eps0=-2.0, beta=beta, tau_plus=tau, warmup_epochs=0)
    want = loss_of(p, 0.2, hex_den)
    got = loss_of(p, 0.2, HardNegativeDenominator(beta=beta, tau_plus=tau))
    assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
def test_hex_reference_with_no_neighbours_is_decoupled(kind):
    """HEX_SPEC 4.4 with an empty H(i) (eps above every min-max-scaled s) is DCL."""
    p, _, _, _ = pairing_and_sims(kind, B, seed=8)
    hex_den = HEXDenominator("fixed", variant="reference", eps0=1.5, warmup_epochs=0)
    assert loss_of(p, 0.2, DecoupledDenominator()) == pytest.approx(
        loss_of(p, 0.2, hex_den), rel=1e-10
    )


# ------------------------------------------------------------------------- gradients
RELATIVES = {
    "decoupled": lambda: DecoupledDenominator(),
    "decoupled_weighted": lambda: DecoupledDenominator(sigma=0.5),
    "debiased": lambda: DebiasedDenominator(tau_plus=0.1),
    "debiased_strong": lambda: DebiasedDenominator(tau_plus=0.6),
    "hard": lambda: HardNegativeDenominator(beta=1.0, tau_plus=0.1),
    "hard_no_debias": lambda: HardNegativeDenominator(beta=2.5, tau_plus=0.0),
    "hard_half": lambda: HardNegativeDenominator(beta=0.5, tau_plus=0.3),
}


@pytest.mark.parametrize("name", sorted(RELATIVES))
@pytest.mark.parametrize("kind", PAIRINGS)
def test_gradcheck_float64(name, kind):
    z0, z1, _ = clustered(5, d=4, seed=11)
    z0.requires_grad_()
    z1.requires_grad_()
    q = clustered(4, d=4, seed=12)[0].requires_grad_() if kind == "queue" else None
    pairing = "simclr" if kind == "simclr" else "cross"
    fn = InfoNCE(0.2, RELATIVES[name]())
    inputs = (z0, z1) if q is None else (z0, z1, q)
    assert torch.autograd.gradcheck(
        lambda a, b, *n: fn(a, b, pairing=pairing, negatives=n[0] if n else None),
        inputs,
        atol=1e-7,
        rtol=1e-5,
    )


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_gpu_code_path_gives_the_cpu_paths_loss_and_gradient(name):
    """On the GPU code path (forced on the CPU) the backward's factors come from one
    stacked exp (``backward_shares(stack=True)``); loss and gradient stay the same."""
    z0, z1, _ = clustered(6, d=8, seed=3)
    out = []
    for forced in (False, True):
        a = z0.clone().requires_grad_()
        with sync_free_paths() if forced else contextlib.nullcontext():
            loss = InfoNCE(0.2, RELATIVES[name]())(a, z1)
            loss.backward()
        out.append((loss.detach(), a.grad))
    torch.testing.assert_close(out[1], out[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_called_alone_each_gives_its_log_term_and_gradient(name):
    """Called on its own, a relative returns log D_i (DCLW: plus (1 - w_i) l_ip);
    ``with_numerator`` (contrastive_loss's call) the same minus s_ip / T, the numerator's
    gradient folded into the hand-written backward. Both are gradchecked."""
    z0, z1, _ = clustered(5, d=4, seed=11)
    p = simclr_pairing(z0, z1)
    z = F.normalize(p.anchors, dim=1)
    sim = (z @ z.T).requires_grad_()
    den = RELATIVES[name]()
    alone = den(sim, 0.2, p.pos_idx, p.self_idx)[0]
    folded = den(sim, 0.2, p.pos_idx, p.self_idx, True)[0]
    lp = sim.gather(1, p.pos_idx)[:, 0] / 0.2
    torch.testing.assert_close(folded, alone - lp, rtol=0, atol=1e-12)
    for fold in (False, True):
        assert torch.autograd.gradcheck(
            lambda s, f=fold: den(s, 0.2, p.pos_idx, p.self_idx, f)[0],
            (sim,),
            atol=1e-7,
            rtol=1e-5,
        )


def _composite_hard(z0, z1, t, beta, tau, detach):
    """HCL by composite autograd (SimCLR pairing), weights optionally detached."""
    p = simclr_pairing(z0, z1)
    s = F.normalize(p.anchors, dim=1) @ F.normalize(p.candidates, dim=1).T
    lp = s.gather(1, p.pos_idx).squeeze(1) / t
    excluded = torch.zeros_like(s, dtype=torch.bool)
    excluded.scatter_(1, p.pos_idx, True).scatter_(1, p.self_idx, True)
    neg = s[~excluded].view(s.shape[0], -1) / t  # (M, N)
    w = neg.shape[1] * torch.softmax(beta * neg, 1)
    r = ((w.detach() if detach else w) * neg.exp()).sum(1)
    floor = neg.shape[1] * math.exp(-1 / t)
    ng = torch.clamp((r - tau * neg.shape[1] * lp.exp()) / (1 - tau), min=floor)
    return (-lp + torch.log(lp.exp() + ng)).mean()


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("beta,tau", [(1.0, 0.1), (0.5, 0.6), (3.0, 0.0)])
def test_hard_gradient_matches_composite_autograd(detach, beta, tau):
    z0, z1, _ = clustered(7, d=5, seed=9)
    grads = []
    for fn in (
        lambda a, b: InfoNCE(0.5, HardNegativeDenominator(beta, tau, detach))(a, b),
        lambda a, b: _composite_hard(a, b, 0.5, beta, tau, detach),
    ):
        a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
        fn(a, b).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_detached_vmf_weights_give_the_gradient_with_constant_weights():
    z0, z1, _ = clustered(6, d=5, seed=3)
    grads = []
    for detach in (True, False):
        a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
        InfoNCE(0.2, DecoupledDenominator(sigma=0.5, detach_weights=detach))(a, b).backward()
        grads.append(a.grad)
    # constant weights: the composite formula with w computed outside the graph
    a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
    p = simclr_pairing(a, b)
    s = F.normalize(p.anchors, dim=1) @ F.normalize(p.candidates, dim=1).T
    sp = s.gather(1, p.pos_idx).squeeze(1)
    w = vmf_weights(sp.detach(), 0.5)
    neg = s.scatter(1, p.pos_idx, float("-inf")).scatter(1, p.self_idx, float("-inf")) / 0.2
    (-(w * sp / 0.2) + neg.logsumexp(1)).mean().backward()
    torch.testing.assert_close(grads[0], a.grad)
    assert not torch.allclose(grads[0], grads[1])


# ------------------------------------------------------------------------- edges
def test_a_batch_of_one_is_refused_with_the_fix():
    z = torch.randn(1, 8)
    with pytest.raises(ValueError, match="at least one negative"):
        InfoNCE(0.1, DecoupledDenominator())(z, z)


@pytest.mark.parametrize("den", [DebiasedDenominator, HardNegativeDenominator])
def test_a_batch_of_one_is_refused_by_every_relative(den):
    with pytest.raises(ValueError, match="at least one negative"):
        InfoNCE(0.1, den())(torch.randn(1, 4), torch.randn(1, 4), pairing="cross")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: DecoupledDenominator(sigma=0.0), "sigma=0.0 must be > 0"),
        (lambda: DecoupledDenominator(sigma=-1.0), "sigma=-1.0 must be > 0"),
        (lambda: DecoupledDenominator(detach_weights=True), "needs sigma"),
        (lambda: DebiasedDenominator(tau_plus=1.0), r"tau_plus=1.0 is outside \[0, 1\)"),
        (lambda: DebiasedDenominator(tau_plus=-0.1), "outside"),
        (lambda: HardNegativeDenominator(beta=-1.0), "beta=-1.0 must be >= 0"),
        (lambda: HardNegativeDenominator(beta=float("inf")), "must be >= 0"),
        (lambda: HardNegativeDenominator(tau_plus=1.5), "outside"),
    ],
)
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", sorted(RELATIVES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
    z0, z1, _ = clustered(8, seed=6, dtype=torch.float32)
    want = InfoNCE(0.1, RELATIVES[name]())(z0.to(dtype).float(), z1.to(dtype).float())
    got = InfoNCE(0.1, RELATIVES[name]())(z0.to(dtype), z1.to(dtype))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_small_temperature_stays_finite(name):
    """T = 0.01 puts logits at +-100: everything is computed in log space."""
    z0, z1, _ = clustered(8, seed=7, dtype=torch.float32)
    z0.requires_grad_()
    loss = InfoNCE(0.01, RELATIVES[name]())(z0, z1)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(z0.grad).all())


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_a_positive_far_above_every_negative_keeps_the_gradient_finite(name):
    """T = 0.005 with near-identical views: l_p - log D is about 145, so e^{l_p - log D}
    is inf in float32. DCL's D has no positive: that factor must not be read (it was,
    times a weight of 0, and gave NaN gradients)."""
    torch.manual_seed(0)
    z0 = torch.randn(8, 16, requires_grad=True)
    z1 = (z0 + 0.001 * torch.randn(8, 16)).detach()
    loss = InfoNCE(0.005, RELATIVES[name]())(z0, z1)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(z0.grad).all())


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_identical_embeddings_give_finite_loss_and_gradients(name):
    """Total collapse: every similarity is 1 (ties everywhere, the floor for tau > 0)."""
    z = torch.ones(6, 4, requires_grad=True)
    loss = InfoNCE(0.1, RELATIVES[name]())(z, z.detach().clone())
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(z.grad).all())


@pytest.mark.parametrize("name", sorted(RELATIVES))
def test_keeps_no_more_square_tensors_than_infonce(name):
    """One (M, K) buffer for backward, as HEX and InfoNCE: no extra float, no mask."""
    base = saved_square_tensors(InfoNCE(0.1), 20, dim=8)
    mine = saved_square_tensors(InfoNCE(0.1, RELATIVES[name]()), 20, dim=8)
    assert mine["float"] <= base["float"] and mine["mask"] == 0
