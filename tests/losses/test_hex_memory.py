"""HEX keeps no more (M, K) float tensors for backward than InfoNCE, and no (M, K) mask."""

from __future__ import annotations

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.losses.memory import saved_square_tensors


def test_hex_keeps_no_more_square_tensors_than_infonce() -> None:
    base = saved_square_tensors(InfoNCE(0.1), 20, dim=8)
    hexed = saved_square_tensors(InfoNCE(0.1, HEXDenominator(warmup_epochs=0.0)), 20, dim=8)
    assert hexed["float"] <= base["float"] and hexed["mask"] == 0
