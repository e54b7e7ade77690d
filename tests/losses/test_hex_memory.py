"""HEX keeps no more (M, K) float tensors for backward than InfoNCE, and no (M, K) mask."""

from __future__ import annotations

import torch

from hexssl.losses import HEXDenominator, InfoNCE


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


def test_hex_keeps_no_more_square_tensors_than_infonce() -> None:
    base = saved_square(InfoNCE(0.1), 20)
    hexed = saved_square(InfoNCE(0.1, HEXDenominator(warmup_epochs=0.0)), 20)
    assert hexed["float"] <= base["float"] and hexed["mask"] == 0
