"""The dense and sparse HEX paths agree, and neither keeps extra (M, K) float tensors."""

from __future__ import annotations

import pytest
import torch

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.losses import hex as hex_module

CASES = {
    "paper": dict(q=0.9),
    "paper_beta2_detached": dict(q=0.8, beta=2.0, detach_weights=True),
    "paper_uniform": dict(q=0.8, beta=0.0, tau_plus=0.0),
    "reference": dict(variant="reference", q=0.9),
    "fixed_step": dict(threshold="fixed", eps0=0.2, schedule="step", epoch_step=1.0),
    "reference_fixed": dict(variant="reference", threshold="fixed", eps0=0.6),
}


def loss_and_grads(kw: dict, dense: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hex_module, "DENSE_MAX", 1 << 40 if dense else -1)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(48, 16, generator=g, dtype=torch.float64, requires_grad=True)
    z1 = (
        z0.detach() + 0.5 * torch.randn(48, 16, generator=g, dtype=torch.float64)
    ).requires_grad_()
    loss_fn = InfoNCE(0.2, HEXDenominator(**kw))
    loss = loss_fn(z0, z1)
    loss.backward()
    return float(loss), z0.grad, z1.grad, loss_fn.stats


@pytest.mark.parametrize("name", sorted(CASES))
def test_dense_and_sparse_paths_agree(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dense = loss_and_grads(CASES[name], True, monkeypatch)
    sparse = loss_and_grads(CASES[name], False, monkeypatch)
    assert dense[0] == pytest.approx(sparse[0], rel=1e-12)
    torch.testing.assert_close(dense[1], sparse[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense[2], sparse[2], rtol=1e-10, atol=1e-12)
    assert float(dense[3]["neighbours"]) == float(sparse[3]["neighbours"]) > 0


def saved_square(fn: InfoNCE, b: int) -> dict[str, int]:
    """Distinct (2B, 2B) tensors autograd keeps for backward, by kind."""
    seen: dict[int, str] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 2 and t.shape == (2 * b, 2 * b):
            seen[t.data_ptr()] = "float" if t.is_floating_point() else "mask"
        return t

    z0 = torch.randn(b, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(z0, torch.randn(b, 8))
    loss.backward()
    kinds = list(seen.values())
    return {"float": kinds.count("float"), "mask": kinds.count("mask")}


@pytest.mark.parametrize("dense", [True, False])
def test_hex_keeps_no_more_float_squares_than_infonce(
    dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hex_module, "DENSE_MAX", 1 << 40 if dense else -1)
    base = saved_square(InfoNCE(0.1), 20)
    hexed = saved_square(InfoNCE(0.1, HEXDenominator(warmup_epochs=0.0)), 20)
    assert hexed["float"] <= base["float"]
    assert hexed["mask"] <= (1 if dense else 0)  # dense keeps H as one boolean mask
