"""Every method trains under a Lightning Trainer, with HEX off, paper and reference."""

from __future__ import annotations

import math

import pytest
import torch

from hexssl.methods import METHODS

from .helpers import HEX_VARIANTS, build, fast_fit, first_batch, tiny_config, train_steps


@pytest.mark.parametrize("variant", sorted(HEX_VARIANTS))
@pytest.mark.parametrize("name", sorted(METHODS))
def test_trains_a_few_steps(name: str, variant: str) -> None:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, *HEX_VARIANTS[variant]))
    metrics = fast_fit(method, dm)
    assert math.isfinite(float(metrics["train/loss"]))
    if variant != "off":  # HEX really ran: its statistics were logged
        assert "train/hex/eps" in metrics
        assert ("train/hex_term" in metrics) is (not METHODS[name].contrastive)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_falls_on_a_fixed_batch(name: str) -> None:
    """25 Adam steps on one batch with fixed augmented views: the SSL loss falls."""
    torch.manual_seed(0)
    method, dm = build(tiny_config(name))
    images, _, superlabels, _ = first_batch(dm)
    views = method.augment(images, torch.Generator().manual_seed(0))
    losses = train_steps(method, views, superlabels, steps=25)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_projector_outputs_are_returned(name: str) -> None:
    """StepOutput.z holds the projector outputs of the two views, feats the backbone's."""
    torch.manual_seed(0)
    method, dm = build(tiny_config(name))
    images, _, _, _ = first_batch(dm)
    views = method.augment(images)
    method.eval()  # BN on running statistics: the same input gives the same output
    with torch.no_grad():
        out = method.ssl_step(views)
        z0 = method.projector(method.backbone(views[0]))
    assert out.feats.shape == (images.shape[0], method.num_features)
    assert out.z[0].shape == out.z[1].shape == z0.shape
    torch.testing.assert_close(out.z[0], z0)
