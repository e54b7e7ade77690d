"""Shared fixtures: clustered embeddings with a two-level hierarchy."""

from __future__ import annotations

import torch
from torch import Tensor


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
