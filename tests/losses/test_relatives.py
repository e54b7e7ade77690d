"""HEX's relatives (decoupled, debiased, hard) against their papers' naive oracles.

Also: float64 gradcheck, the identities that tie them to InfoNCE, degenerate inputs and
argument errors. The two-process test is in test_distributed.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hexssl.losses import InfoNCE, InfoNCEDenominator, contrastive_loss
from hexssl.losses.infonce import cross_pairing, simclr_pairing
from hexssl.losses.relatives import DecoupledDenominator, vmf_weights

from . import oracle
from . import oracle_relatives as rel
from .conftest import clustered

PAIRINGS = ["simclr", "cross", "queue"]


def pairing_and_sims(kind: str, b: int = 10, seed: int = 0):
    z0, z1, _ = clustered(b, seed=seed)
    if kind == "simclr":
        p = simclr_pairing(z0, z1)
    elif kind == "cross":
        p = cross_pairing(z0, z1)
    else:
        p = cross_pairing(z0, z1, clustered(7, seed=seed + 1)[0])
    s = (F.normalize(p.anchors, dim=1) @ F.normalize(p.candidates, dim=1).T).numpy()
    pos = p.pos_idx[:, 0].tolist()
    self_ = None if p.self_idx is None else p.self_idx[:, 0].tolist()
    return p, s, pos, self_


def loss_of(p, t: float, den: torch.nn.Module) -> float:
    return float(contrastive_loss(p, t, den)[0])


# ------------------------------------------------------------------------- decoupled
@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("t", [0.05, 0.1, 0.5])
def test_decoupled_matches_oracle(kind, t):
    p, s, pos, self_ = pairing_and_sims(kind, seed=1)
    want = oracle.mean_loss(rel.dcl_anchor_loss, s, pos, self_, t)
    assert loss_of(p, t, DecoupledDenominator()) == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", PAIRINGS)
@pytest.mark.parametrize("sigma", [0.2, 0.5, 2.0])
def test_decoupled_weighted_matches_oracle(kind, sigma):
    p, s, pos, self_ = pairing_and_sims(kind, seed=2)
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
    p, _, _, _ = pairing_and_sims(kind, seed=seed)
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


# ------------------------------------------------------------------------- gradients
RELATIVES = {
    "decoupled": lambda: DecoupledDenominator(),
    "decoupled_weighted": lambda: DecoupledDenominator(sigma=0.5),
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


@pytest.mark.parametrize("kw", [dict(sigma=0.0), dict(sigma=-1.0)])
def test_bad_arguments_are_refused(kw):
    with pytest.raises(ValueError, match="must be"):
        DecoupledDenominator(**kw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    z0, z1, _ = clustered(8, seed=6, dtype=torch.float32)
    want = InfoNCE(0.1, DecoupledDenominator(sigma=0.5))(z0.to(dtype).float(), z1.to(dtype).float())
    got = InfoNCE(0.1, DecoupledDenominator(sigma=0.5))(z0.to(dtype), z1.to(dtype))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_small_temperature_stays_finite():
    z0, z1, _ = clustered(8, seed=7, dtype=torch.float32)
    z0.requires_grad_()
    loss = InfoNCE(0.01, DecoupledDenominator(sigma=0.5))(z0, z1)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(z0.grad).all())
