"""Every contrastive method trains with each relative of HEX as its InfoNCE denominator."""

from __future__ import annotations

import math

import pytest
import torch

from hexssl.losses import InfoNCE
from hexssl.losses.relatives import RELATIVES
from hexssl.methods import METHODS

from .helpers import build, fast_fit, tiny_config

CONTRASTIVE = sorted(n for n, c in METHODS.items() if c.contrastive)
SETTINGS = {
    "decoupled": ["loss.denominator=decoupled"],
    "decoupled_weighted": ["loss.denominator=decoupled", "loss.sigma=0.5"],
    "debiased": ["loss.denominator=debiased"],
    "hard": ["loss.denominator=hard", "loss.beta=1.0", "loss.tau_plus=0.1"],
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("name", CONTRASTIVE)
def test_trains_a_few_steps_with_the_relative(name: str, setting: str) -> None:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, *SETTINGS[setting]))
    losses = [m for m in method.modules() if isinstance(m, InfoNCE)]
    kind = RELATIVES[SETTINGS[setting][0].split("=")[1]]
    assert losses and all(isinstance(m.denominator, kind) for m in losses)
    metrics = fast_fit(method, dm)
    assert math.isfinite(float(metrics["train/loss"]))
    assert "train/hex_term" not in metrics and "train/hex/eps" not in metrics
    # debiasing logs the share of anchors held at its floor (not under HEX's train/hex/)
    assert ("train/denominator/floor_share" in metrics) is (setting in ("debiased", "hard"))
    assert not any(key.startswith("train/hex/") for key in metrics)
