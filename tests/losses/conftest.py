"""Shared fixtures: clustered embeddings with a two-level hierarchy, and pairings of them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from hexssl.losses.infonce import cross_pairing, simclr_pairing


def clustered(
    b: int, d: int = 16, n_super: int = 3, n_class: int = 2, seed: int = 0, dtype=torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """Two views (B, D) of embeddings drawn around class centres inside superclass centres.

    Returns (z0, z1, superclass labels (B,)).
    """
    g = torch.Generator().manual_seed(seed)
    sup = torch.randn(n_super, d, generator=g, dtype=dtype) * 2.0
    cls = sup.repeat_interleave(n_class, 0) + torch.randn(
        n_super * n_class, d, generator=g, dtype=dtype
    )
    labels = torch.randint(0, n_super * n_class, (b,), generator=g)
    base = cls[labels] + 0.5 * torch.randn(b, d, generator=g, dtype=dtype)
    z0 = base + 0.3 * torch.randn(b, d, generator=g, dtype=dtype)
    z1 = base + 0.3 * torch.randn(b, d, generator=g, dtype=dtype)
    return z0, z1, labels // n_class


def pairing_and_sims(kind: str, b: int = 12, seed: int = 0):  # type: ignore[no-untyped-def]
    """A pairing (SimCLR, cross-view, or cross-view with a queue) of clustered embeddings,
    its cosine similarities as numpy, and the positive and self indices as lists."""
    z0, z1, _ = clustered(b, seed=seed)
    if kind == "simclr":
        p = simclr_pairing(z0, z1)
    elif kind == "cross":
        p = cross_pairing(z0, z1)
    else:
        queue = clustered(7, seed=seed + 1)[0]
        p = cross_pairing(z0, z1, queue)
    s = (F.normalize(p.anchors, dim=1) @ F.normalize(p.candidates, dim=1).T).numpy()
    pos = p.pos_idx[:, 0].tolist()
    self_ = None if p.self_idx is None else p.self_idx[:, 0].tolist()
    return p, s, pos, self_


def assert_same_loss_grads_stats(got: tuple, want: tuple, grad_rtol: float) -> None:
    """Two (loss, grad z0, grad z1, stats) results of one HEX configuration on two paths."""
    assert got[0] == pytest.approx(want[0], rel=1e-12, abs=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=grad_rtol, atol=1e-12)
    torch.testing.assert_close(got[2], want[2], rtol=grad_rtol, atol=1e-12)
    assert got[3] == pytest.approx(want[3], rel=1e-10, abs=1e-12)
