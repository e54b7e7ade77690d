"""How many (2B, 2B) tensors a contrastive loss keeps for backward (its memory cost).

Shared by the memory test and ``benchmarks/loss_speed.py``: one definition of what is
counted.
"""

from __future__ import annotations

import torch
from torch import nn


def saved_square_tensors(fn: nn.Module, b: int, dim: int = 128) -> dict[str, int]:
    """Distinct (2B, 2B) tensors autograd saves in ``fn(z0, z1).backward()``, by kind.

    Custom autograd nodes are included. Returns {"float": n, "mask": m} (mask: boolean
    or integer). Shape: z0, z1 are random (b, dim) embeddings.
    """
    n, seen = 2 * b, {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 2 and t.shape == (n, n):
            seen[t.data_ptr()] = "float" if t.is_floating_point() else "mask"
        return t

    z0 = torch.randn(b, dim, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(z0, torch.randn(b, dim))
    loss.backward()
    kinds = list(seen.values())
    return {"float": kinds.count("float"), "mask": kinds.count("mask")}
