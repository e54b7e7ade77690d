"""Losses: InfoNCE with a pluggable denominator, HEX, thresholds and base SSL losses."""

from hexssl.losses.hex import HEXDenominator
from hexssl.losses.infonce import (
    InfoNCE,
    InfoNCEDenominator,
    Pairing,
    contrastive_loss,
    cross_pairing,
    simclr_pairing,
)
from hexssl.losses.relatives import (
    RELATIVES,
    DebiasedDenominator,
    DecoupledDenominator,
    HardNegativeDenominator,
)
from hexssl.losses.thresholds import (
    THRESHOLDS,
    AdaptiveThreshold,
    FixedThreshold,
    SuperclassOracle,
    build_threshold,
)

__all__ = [
    "RELATIVES",
    "THRESHOLDS",
    "AdaptiveThreshold",
    "DebiasedDenominator",
    "DecoupledDenominator",
    "FixedThreshold",
    "HEXDenominator",
    "HardNegativeDenominator",
    "InfoNCE",
    "InfoNCEDenominator",
    "Pairing",
    "SuperclassOracle",
    "build_threshold",
    "contrastive_loss",
    "cross_pairing",
    "simclr_pairing",
]
