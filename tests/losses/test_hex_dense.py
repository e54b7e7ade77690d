"""The dense-mask HEX path (GPUs: no host syncs) against the sparse path, value and gradient."""

from __future__ import annotations

import pytest
import torch

from hexssl.losses import HEXDenominator, InfoNCE

from .conftest import assert_same_loss_grads_stats, clustered
from .test_hex_grad_and_edges import DENOMINATORS, T

HEX_CONFIGS = sorted(k for k, v in DENOMINATORS.items() if v)
MORE = {  # thresholds and states the gradient tests above do not reach
    "per_anchor": dict(q=0.7, per_anchor=True),
    "ema": dict(q=0.8, ema=0.9),
    "fixed_cosine": dict(threshold="fixed", eps0=0.6, schedule="cosine", max_epochs=10),
    "oracle_like_empty": dict(threshold="fixed", eps0=1.0),  # H empty everywhere
    "all_neighbours": dict(threshold="fixed", eps0=-1.0),  # H = N(i)
    "reference_all": dict(variant="reference", threshold="fixed", eps0=-1.0, minmax=False),
}


def _kwargs(name: str) -> dict:
    if name in MORE:
        return dict(MORE[name])
    return {k: v for k, v in DENOMINATORS[name].items() if k != "kind"}


def _loss_and_grads(name: str, dense: bool, pairing: str, queue: bool) -> tuple:
    z0, z1, _ = clustered(10, d=6, seed=5)
    z0.requires_grad_()
    z1.requires_grad_()
    neg = clustered(7, d=6, seed=6)[0] if queue else None
    fn = InfoNCE(T, HEXDenominator(dense=dense, **_kwargs(name)))
    fn.set_progress(3.0)
    loss = fn(z0, z1, pairing=pairing, negatives=neg)
    loss.backward()
    stats = {k: float(v) for k, v in fn.stats.items()}
    return float(loss), z0.grad, z1.grad, stats


@pytest.mark.parametrize("name", HEX_CONFIGS + sorted(MORE))
@pytest.mark.parametrize("pairing,queue", [("simclr", False), ("cross", False), ("cross", True)])
def test_dense_path_equals_sparse_path(name, pairing, queue):
    if pairing == "simclr" and queue:
        pytest.skip("no queue with the SimCLR pairing")
    sparse = _loss_and_grads(name, False, pairing, queue)
    dense = _loss_and_grads(name, True, pairing, queue)
    assert_same_loss_grads_stats(dense, sparse, grad_rtol=1e-10)


@pytest.mark.parametrize("name", ["paper", "paper_uniform", "paper_no_debias", "reference"])
def test_dense_path_gradcheck_float64(name):
    z0, z1, _ = clustered(6, d=5, seed=11)
    z0.requires_grad_()
    z1.requires_grad_()
    fn = InfoNCE(T, HEXDenominator(dense=True, **_kwargs(name)))
    assert torch.autograd.gradcheck(fn, (z0, z1), atol=1e-7, rtol=1e-5)


def test_dense_is_the_default_off_the_cpu_only():
    den = HEXDenominator()
    assert den.dense is None  # auto: sparse here (CPU), dense on CUDA (tests/gpu)
    z0, z1, _ = clustered(8, d=4)
    fn = InfoNCE(T, den)
    fn.set_progress(1.0)
    assert float(fn(z0, z1)) == pytest.approx(
        float(InfoNCE(T, HEXDenominator(dense=True))(z0, z1)), rel=1e-12
    )


def test_loaded_progress_drives_warmup_without_set_progress():
    a = HEXDenominator(warmup_epochs=5.0)
    a.set_progress(7.0)
    b = HEXDenominator(warmup_epochs=5.0)
    assert b.in_warmup
    b.load_state_dict(a.state_dict())
    assert not b.in_warmup  # the host copy follows the loaded buffer
