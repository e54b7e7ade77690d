"""Each method's loss against a naive oracle written from its paper's equations.

Methods run in eval mode (BN on running statistics, no dropout) so that the oracle can
recompute the same embeddings; HEX is off, so every InfoNCE is plain cross-entropy.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from hexssl.methods import SSLMethod

from .helpers import build, first_batch, tiny_config

Z = torch.no_grad()


def ce(anchors: Tensor, cands: Tensor, T: float, extra: Tensor | None = None) -> Tensor:
    """Cross-entropy InfoNCE: anchor i's positive is candidate i; ``extra`` are negatives."""
    a, c = F.normalize(anchors, dim=1), F.normalize(cands, dim=1)
    logits = a @ c.T  # (B, B)
    if extra is not None:
        logits = torch.cat([logits, a @ F.normalize(extra, dim=1).T], 1)  # (B, B + Q)
    return F.cross_entropy(logits / T, torch.arange(a.shape[0]))


def nt_xent(a: Tensor, b: Tensor, T: float) -> Tensor:
    """SimCLR's NT-Xent over the 2B x 2B matrix of [a; b], self excluded."""
    z = F.normalize(torch.cat([a, b]), dim=1)  # (2B, D)
    n = z.shape[0]
    sim = (z @ z.T).fill_diagonal_(float("-inf"))  # (2B, 2B)
    return F.cross_entropy(sim / T, (torch.arange(n) + n // 2) % n)


def setup(name: str, *overrides: str) -> tuple[SSLMethod, list[Tensor], Tensor, Any]:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, *overrides))
    images, _, superlabels, _ = first_batch(dm)
    method.eval()
    return method, method.augment(images), superlabels, method.params


def online(method: SSLMethod, views: list[Tensor]) -> list[Tensor]:
    return [method.projector(method.backbone(v)) for v in views]


def target(method: SSLMethod, views: list[Tensor]) -> list[Tensor]:
    mb, mp = method.momentum_backbone, method.momentum_projector
    return [mp(mb(v)) for v in views]


@Z
def test_moco_v2() -> None:
    m, views, _, p = setup("moco_v2")
    q, k = online(m, views), target(m, views)
    queues = [m.queue(v).queue.clone() for v in (0, 1)]
    want = (ce(q[0], k[1], p.temperature, queues[1]) + ce(q[1], k[0], p.temperature, queues[0])) / 2
    torch.testing.assert_close(m.ssl_step(views).loss, want)
    for v in (0, 1):  # the keys of each view were enqueued into that view's queue
        torch.testing.assert_close(m.queue(v).queue[: k[v].shape[0]], F.normalize(k[v], dim=1))


@Z
def test_moco_v3() -> None:
    m, views, _, p = setup("moco_v3")
    q = [m.predictor(z) for z in online(m, views)]
    k = target(m, views)
    want = 2 * p.temperature * (ce(q[0], k[1], p.temperature) + ce(q[1], k[0], p.temperature))
    torch.testing.assert_close(m.ssl_step(views).loss, want)


@Z
@pytest.mark.parametrize("stacked", [False, True])
def test_nnclr(stacked: bool) -> None:
    m, views, _, p = setup("nnclr", f"method.params.stacked={stacked}")
    z = online(m, views)
    pred = [m.predictor(zi) for zi in z]
    support = F.normalize(m.support.queue.clone(), dim=1)
    nn = [support[(F.normalize(zi, dim=1) @ support.T).argmax(1)] for zi in z]
    loss = nt_xent if stacked else ce
    want = (loss(nn[0], pred[1], p.temperature) + loss(nn[1], pred[0], p.temperature)) / 2
    torch.testing.assert_close(m.ssl_step(views).loss, want)
    torch.testing.assert_close(m.support.queue[: z[0].shape[0]], F.normalize(z[0], dim=1))


@Z
def test_byol() -> None:
    m, views, _, _ = setup("byol")
    q = [m.predictor(z) for z in online(m, views)]
    t = target(m, views)

    def regress(a: Tensor, b: Tensor) -> Tensor:
        return (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1).mean()

    torch.testing.assert_close(m.ssl_step(views).loss, regress(q[0], t[1]) + regress(q[1], t[0]))


@Z
@pytest.mark.parametrize("name", ["barlow", "vicreg"])
def test_barlow_and_vicreg_apply_their_loss_to_the_projections(name: str) -> None:
    m, views, _, _ = setup(name)
    z = online(m, views)
    torch.testing.assert_close(m.ssl_step(views).loss, m.loss_fn(z[0], z[1]))


@Z
def test_all4one() -> None:
    m, views, _, p = setup("all4one")
    z = online(m, views)
    t = [F.normalize(ti, dim=1) for ti in target(m, views)]
    support = m.support.queue.clone()
    nn = [support[(ti @ support.T).topk(p.num_neighbours, dim=1).indices] for ti in t]  # (B, k, D)
    pred = [m.predictor(zi) for zi in z]
    nnclr = (ce(nn[0][:, 0], pred[1], p.temperature) + ce(nn[1][:, 0], pred[0], p.temperature)) / 2
    rich = [m.centroid(n) for n in nn]
    own = [
        m.centroid(torch.cat([m.centroid_predictor(zi)[:, None], n[:, :-1]], 1))
        for zi, n in zip(z, nn)
    ]
    T2 = p.centroid_temperature
    centroid = (ce(rich[0], own[1], T2) + ce(rich[1], own[0], T2)) / 2
    corr = [
        F.normalize(t[0], dim=0).T @ F.normalize(z[1], dim=0),
        F.normalize(t[1], dim=0).T @ F.normalize(z[0], dim=0),
    ]
    eye = torch.eye(corr[0].shape[0], dtype=torch.bool)
    on = torch.stack([(c[eye] - 1).pow(2).mean() for c in corr]).mean().sqrt()
    off = torch.stack([c[~eye].pow(2).mean() for c in corr]).mean().sqrt()
    want = 0.5 * nnclr + 0.5 * centroid + 5.0 * (on + off) / 2
    torch.testing.assert_close(m.ssl_step(views).loss, want)
