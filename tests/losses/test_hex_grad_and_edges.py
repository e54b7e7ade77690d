"""Gradients (gradcheck), degenerate inputs, autocast and argument errors."""

from __future__ import annotations

import pytest
import torch

from hexssl.losses import HEXDenominator, InfoNCE, InfoNCEDenominator
from hexssl.losses.infonce import simclr_pairing

from .conftest import clustered

T = 0.2
DENOMINATORS = {
    "infonce": dict(),
    "paper": dict(kind="hex", q=0.8),
    "paper_uniform": dict(kind="hex", q=0.8, beta=0.0),
    "paper_no_debias": dict(kind="hex", q=0.7, tau_plus=0.0, beta=2.0),
    "paper_strong_debias": dict(kind="hex", q=0.6, tau_plus=0.5),
    "paper_detached": dict(kind="hex", q=0.8, detach_weights=True),
    "paper_half_local": dict(kind="hex", q=0.8, lambda_local=0.5),
    "reference": dict(kind="hex", variant="reference", q=0.9),
    "reference_fixed": dict(kind="hex", variant="reference", threshold="fixed", eps0=0.8),
}


def make(name: str) -> torch.nn.Module:
    kw = dict(DENOMINATORS[name])
    return (
        HEXDenominator(**{k: v for k, v in kw.items() if k != "kind"})
        if kw
        else InfoNCEDenominator()
    )


GRADCHECKED = sorted(set(DENOMINATORS) - {"paper_detached"})  # detached: not the true gradient


@pytest.mark.parametrize("name", GRADCHECKED)
@pytest.mark.parametrize("pairing", ["simclr", "cross"])
def test_gradcheck_float64(name, pairing):
    z0, z1, _ = clustered(6, d=5, seed=11)
    z0.requires_grad_()
    z1.requires_grad_()
    fn = InfoNCE(T, make(name))
    assert torch.autograd.gradcheck(
        lambda a, b: fn(a, b, pairing=pairing), (z0, z1), atol=1e-7, rtol=1e-5
    )


def test_gradcheck_with_queue():
    z0, z1, _ = clustered(5, d=4, seed=2)
    q = clustered(6, d=4, seed=3)[0]
    fn = InfoNCE(T, make("paper"))
    z0.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: fn(a, z1, pairing="cross", negatives=q), (z0,))


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", ["paper", "paper_no_debias", "reference"])
def test_denominator_alone_gives_log_d_and_its_gradient(name, dense):
    """Called on its own, HEX returns log D_i with its own gradient; ``with_numerator``
    (contrastive_loss's call) returns log D_i - s_ip / T, the numerator's gradient folded
    into the hand-written backward. Both are gradchecked against finite differences."""
    z0, z1, _ = clustered(6, d=5, seed=11)
    pairs = simclr_pairing(z0, z1)
    z = torch.nn.functional.normalize(pairs.anchors, dim=1)
    sim = (z @ z.T).requires_grad_()
    den = make(name)
    den.dense = dense
    log_d = den(sim, T, pairs.pos_idx, pairs.self_idx)[0]
    loss = den(sim, T, pairs.pos_idx, pairs.self_idx, True)[0]
    lp = sim.gather(1, pairs.pos_idx)[:, 0] / T
    torch.testing.assert_close(loss, log_d - lp, rtol=0, atol=1e-12)
    for fold in (False, True):
        assert torch.autograd.gradcheck(
            lambda s, f=fold: den(s, T, pairs.pos_idx, pairs.self_idx, f)[0],
            (sim,),
            atol=1e-7,
            rtol=1e-5,
        )


def autograd_hex(z0, z1, eps, beta, tau, t, detach):
    """Composite-autograd HEX (spec 4.2-4.3, SimCLR pairing), optionally w detached."""
    z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1)
    s = z @ z.T
    n, b = s.shape[0], z0.shape[0]
    losses = []
    for i in range(n):
        p = (i + b) % n
        neg = [j for j in range(n) if j not in (i, p)]
        h = [j for j in neg if float(s[i, j].detach()) > eps]
        g = [j for j in neg if j not in h]
        d = torch.exp(s[i, p] / t) + torch.exp(s[i, g] / t).sum()
        if h:
            w = len(h) * torch.softmax(beta * s[i, h] / t, 0)
            r = ((w.detach() if detach else w) * torch.exp(s[i, h] / t)).sum()
            if tau > 0:
                raw = (r - tau * len(h) * torch.exp(s[i, p] / t)) / (1 - tau)
                r = torch.maximum(raw, torch.tensor(len(h) * torch.e ** (-1 / t)).to(s))
            d = d + r
        losses.append(-s[i, p] / t + torch.log(d))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("beta,tau", [(0.0, 0.0), (1.5, 0.0), (0.0, 0.1), (1.5, 0.1), (2.0, 0.5)])
def test_gradient_matches_composite_autograd_tightly(detach, beta, tau):
    z0, z1, _ = clustered(6, d=5, seed=11)
    a = z0.clone().requires_grad_()
    want_loss = autograd_hex(a, z1, 0.5, beta, tau, T, detach)
    (want,) = torch.autograd.grad(want_loss, a)
    b = z0.clone().requires_grad_()
    den = HEXDenominator("fixed", eps0=0.5, beta=beta, tau_plus=tau, detach_weights=detach)
    loss = InfoNCE(T, den)(b, z1)
    loss.backward()
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-12)
    torch.testing.assert_close(b.grad, want, rtol=1e-9, atol=1e-11)


def test_detached_weights_change_the_gradient():
    z0, z1, _ = clustered(6, d=5, seed=11)
    grads = []
    for detach in (True, False):
        b = z0.clone().requires_grad_()
        den = HEXDenominator("fixed", eps0=0.5, beta=1.5, detach_weights=detach)
        InfoNCE(T, den)(b, z1).backward()
        grads.append(b.grad)
    assert not torch.allclose(grads[0], grads[1])


def finite_loss_and_grad(z0: torch.Tensor, z1: torch.Tensor, fn: InfoNCE, pairing: str) -> None:
    a = z0.clone().requires_grad_()
    c = z1.clone().requires_grad_()
    loss = fn(a, c, pairing=pairing)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(a.grad).all() and torch.isfinite(c.grad).all()


DEGENERATE = {
    "one_pair": lambda: (torch.randn(1, 8), torch.randn(1, 8)),
    "identical": lambda: (torch.ones(6, 8), torch.ones(6, 8)),
    "zero_vector": lambda: (torch.cat([torch.zeros(1, 8), torch.randn(5, 8)]), torch.randn(6, 8)),
    "all_zero": lambda: (torch.zeros(4, 8), torch.zeros(4, 8)),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", sorted(DENOMINATORS))
@pytest.mark.parametrize("pairing", ["simclr", "cross"])
def test_degenerate_inputs_are_finite(case, name, pairing):
    z0, z1 = DEGENERATE[case]()
    finite_loss_and_grad(z0, z1, InfoNCE(0.1, make(name)), pairing)


@pytest.mark.parametrize("eps", [-1.0, 0.0, 1.0])  # -1: every negative is a neighbour
@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_extreme_thresholds_are_finite(eps, variant, tau):
    z0, z1, _ = clustered(8, dtype=torch.float32)
    den = HEXDenominator("fixed", eps0=eps, variant=variant, tau_plus=tau)
    finite_loss_and_grad(z0, z1, InfoNCE(0.1, den), "simclr")


def test_all_negatives_in_h_reference_falls_back_to_infonce_without_positive():
    z0, z1, _ = clustered(8)
    ref = InfoNCE(0.1, HEXDenominator("fixed", eps0=-1.0, variant="reference"))(z0, z1)
    # G(i) empty -> N(i): InfoNCE with the positive removed from the denominator
    a = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1)
    s = a @ a.T / 0.1
    n = s.shape[0]
    pos = (torch.arange(n) + 8) % n
    mask = torch.eye(n, dtype=torch.bool)
    mask[torch.arange(n), pos] = True
    want = (s.masked_fill(mask, float("-inf")).logsumexp(1) - s[torch.arange(n), pos]).mean()
    assert float(ref) == pytest.approx(float(want), rel=1e-10)


@pytest.mark.parametrize("name", ["infonce", "paper", "reference"])
def test_autocast_bf16_cpu(name):
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 32)
    x0, x1 = torch.randn(32, 16), torch.randn(32, 16)
    fn = InfoNCE(0.1, make(name))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z0, z1 = proj(x0), proj(x1)
        assert z0.dtype == torch.bfloat16
        loss = fn(z0, z1)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(proj.weight.grad).all()
    ref = InfoNCE(0.1, make(name))(proj(x0), proj(x1))
    assert float(loss) == pytest.approx(float(ref), rel=0.05)


BAD = [
    (lambda: InfoNCE(temperature=0.0), "temperature=0.0"),
    (lambda: InfoNCE(temperature=-1), "temperature=-1"),
    (lambda: HEXDenominator(q=1.0), "q=1.0"),
    (lambda: HEXDenominator(q=0.0), "q=0.0"),
    (lambda: HEXDenominator(tau_plus=1.0), "tau_plus=1.0"),
    (lambda: HEXDenominator(tau_plus=-0.1), "tau_plus=-0.1"),
    (lambda: HEXDenominator(beta=-1), "beta=-1"),
    (lambda: HEXDenominator(lambda_local=-0.5), "lambda_local=-0.5"),
    (lambda: HEXDenominator(variant="Paper"), "'paper', 'reference'"),
    (lambda: HEXDenominator(threshold="HEX_adaptive"), "adaptive"),
    (lambda: HEXDenominator(threshold="fixed", schedule="linear"), "cosine"),
    (lambda: HEXDenominator(threshold="fixed", schedule="cosine"), "max_epochs"),
    (lambda: HEXDenominator(threshold="fixed", q=0.9), "q"),
    (lambda: HEXDenominator(warmup_epochs=-1), "warmup_epochs=-1"),
]


@pytest.mark.parametrize("build,needle", BAD)
def test_bad_hyperparameters_raise_value_error(build, needle):
    with pytest.raises(ValueError, match=None) as info:
        build()
    assert needle in str(info.value)


def test_shape_mismatch_errors():
    fn = InfoNCE(0.1)
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="negatives have dim"):
        fn(torch.randn(4, 8), torch.randn(4, 8), pairing="cross", negatives=torch.randn(3, 7))
    with pytest.raises(ValueError, match="unknown pairing"):
        fn(torch.randn(4, 8), torch.randn(4, 8), pairing="nnclr")
    with pytest.raises(ValueError, match="empty batch"):
        fn(torch.randn(0, 8), torch.randn(0, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_local_takes_the_thresholds_row_max_as_its_shift(dtype):
    """The local term shifted by the threshold's row maximum (``SparseH.top``) equals the
    one shifted by its own max over H(i), whatever ``top`` holds in rows without a
    neighbour: here 300 above their positive logit, where e^{l_p - top} underflows (x
    must still come out inf, the floor, not a NaN)."""
    from hexssl.losses.hex import _sparse_local

    torch.manual_seed(0)
    rows = torch.tensor([0, 0, 0, 2, 2, 4])  # rows 1 and 3 have no neighbour
    l_h = torch.randn(6, dtype=dtype) * 3
    lp = torch.randn(5, dtype=dtype) * 3
    own = torch.full((5,), float("-inf"), dtype=dtype).scatter_reduce_(0, rows, l_h, "amax")
    top = torch.where(torch.isinf(own), lp + 300.0, own)
    for beta, tau in [(1.0, 0.1), (0.5, 0.3), (0.0, 0.0)]:
        hp = (beta, tau, 0.7, 1.0 / T, False)
        want, got = _sparse_local(l_h, rows, lp, None, hp), _sparse_local(l_h, rows, lp, top, hp)
        for name in ("log_loc", "log_r", "a", "c", "e_b", "e_1b"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name))
        assert torch.isneginf(got.log_loc[[1, 3]]).all()  # no neighbour, no local term
        if tau > 0:
            assert torch.equal(got.active, want.active)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_exp_by_exp2_agrees_with_exp_and_keeps_minus_inf_at_zero(dtype):
    """The sparse path's e^x is 2^(x log2 e) on the CPU (exp's vector path stalls on
    -inf): equal to exp up to the rounding of x log2 e, which |x| <= 80 amplifies (so
    within 2 * 80 ulps), and exactly 0 at -inf."""
    from hexssl.losses.hex import _exp_

    x = torch.linspace(-80.0, 20.0, 4001, dtype=dtype)
    x[::7] = float("-inf")
    got = _exp_(x.clone())
    torch.testing.assert_close(got, x.exp(), rtol=160 * torch.finfo(dtype).eps, atol=0)
    assert torch.equal(got[::7], torch.zeros_like(got[::7]))
