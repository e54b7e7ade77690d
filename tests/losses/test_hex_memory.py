"""HEX keeps fewer (M, K) float tensors for backward than InfoNCE, and no (M, K) mask."""

from __future__ import annotations

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.losses.memory import saved_square_tensors


def test_hex_keeps_fewer_square_tensors_than_infonce() -> None:
    """InfoNCE keeps two; HEX one, its work buffer E: its backward takes the numerator's
    gradient too, so no differentiated gather of s_ip keeps the similarities."""
    base = saved_square_tensors(InfoNCE(0.1), 20, dim=8)
    hexed = saved_square_tensors(InfoNCE(0.1, HEXDenominator(warmup_epochs=0.0)), 20, dim=8)
    assert base["float"] == 2
    assert hexed["float"] == 1 and hexed["mask"] == 0
