"""The purity diagnostic (hexssl.eval.purity) measures the H the loss uses (issue 10 item 7).

Each check recomputes H independently from the method's own modules: the run's
threshold (fixed eps, its q, the oracle) on the tensors that method's loss contrasts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.methods.helpers import build, first_batch, tiny_config

from hexssl.eval.purity import purity_metrics, purity_sets
from hexssl.losses.thresholds import AdaptiveThreshold

pytestmark = pytest.mark.single_thread


def _batch(method, dm):  # type: ignore[no-untyped-def]
    images, labels, supers, _ = first_batch(dm)
    method.eval()
    return images, labels, supers


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T


def _off_diag(mask: torch.Tensor) -> torch.Tensor:
    return mask & ~torch.eye(mask.shape[0], dtype=torch.bool)


def test_fixed_threshold_run_uses_its_own_eps_on_projections() -> None:
    cfg = tiny_config("simclr", "hex.enabled=true", "hex.threshold=fixed", "hex.eps0=0.2")
    method, dm = build(cfg)
    images, _, supers = _batch(method, dm)
    sets = purity_sets(method, images, supers)
    with torch.no_grad():
        z = method.projector(method.backbone(method.eval_view(images)))
    H, eps = sets["own"]
    assert abs(eps - 0.2) < 1e-6 and torch.equal(H, _off_diag(_cos(z, z) > 0.2))
    assert abs(sets["q99"][1] - 0.2) > 1e-3  # the fixed-q diagnostic is kept under its own name


def test_adaptive_run_uses_its_own_q() -> None:
    method, dm = build(tiny_config("simclr", "hex.enabled=true", "hex.q=0.5"))
    images, _, supers = _batch(method, dm)
    sets = purity_sets(method, images, supers)
    with torch.no_grad():
        z = method.projector(method.backbone(method.eval_view(images)))
    sim = _cos(z, z)
    diag = torch.arange(sim.shape[0])[:, None]
    H_ref, eps_ref = AdaptiveThreshold(q=0.5)(sim, diag, None, 0.0)
    assert torch.equal(sets["own"][0], H_ref) and sets["own"][1] == float(eps_ref)
    assert sets["own"][1] < sets["q99"][1]  # q 0.5 is a lower threshold than q 0.99
    assert sets["own"][0].sum() > sets["q99"][0].sum()


def test_moco_v3_measures_predictions_against_momentum_keys() -> None:
    method, dm = build(
        tiny_config("moco_v3", "hex.enabled=true", "hex.threshold=fixed", "hex.eps0=0.1")
    )
    images, _, supers = _batch(method, dm)
    with torch.no_grad():
        x = method.eval_view(images)
        q = method.predictor(method.projector(method.backbone(x)))
        k = method.momentum_projector(method.momentum_backbone(x))
        z = method.projector(method.backbone(x))
    H, _ = purity_sets(method, images, supers)["own"]
    assert torch.equal(H, _off_diag(_cos(q, k) > 0.1))
    assert not torch.allclose(_cos(q, k), _cos(z, z))  # not the projector outputs


def test_nnclr_anchors_are_support_set_neighbours() -> None:
    method, dm = build(tiny_config("nnclr", "hex.enabled=true"))
    images, _, _ = _batch(method, dm)
    with torch.no_grad():
        anchors, cands = method.hex_views(method.eval_view(images))
        z = method.projector(method.backbone(method.eval_view(images)))
    queue = method.support.queue
    assert all(bool((queue == row).all(1).any()) for row in anchors)  # rows of the support set
    assert torch.allclose(cands, method.predictor(z).detach())


def test_oracle_and_hex_off_metrics() -> None:
    method, dm = build(tiny_config("simclr", "hex.enabled=true", "hex.threshold=superclass_oracle"))
    images, labels, supers = _batch(method, dm)
    m = purity_metrics(method, (images, labels, supers))
    assert m["val/purity_super"] == 1.0  # the oracle's H is the anchor's superclass
    assert m["val/purity_q99_super"] < 1.0 and 0 < m["val/purity_super_chance"] < 1
    off, dm = build(tiny_config("simclr", "hex.enabled=false"))
    m = purity_metrics(off, (images, labels, supers))
    assert off.hex_threshold() is None and m["val/purity_class"] == m["val/purity_q99_class"]


def test_weighted_hex_term_threshold_is_found() -> None:
    method, _ = build(tiny_config("barlow", "hex.enabled=true", "hex.q=0.7"))
    thr = method.hex_threshold()
    assert isinstance(thr, AdaptiveThreshold) and thr.q == 0.7
