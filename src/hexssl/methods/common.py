"""Pieces shared by several methods: the feature queue, the momentum forward, view checks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.losses.distributed import gather_no_grad


class FeatureQueue(nn.Module):
    """FIFO memory of L2-normalised embeddings: a MoCo queue or an NNCLR support set.

    Both buffers are saved in checkpoints, so a resumed run continues with the same
    memory. ``push`` gathers the rows from every process first, so all processes hold
    the same queue. Any size works: the write position wraps around, and a batch larger
    than the queue keeps its newest rows.

    Args:
        size: number of stored embeddings Q.
        dim: embedding width D.

    Attributes:
        queue: (Q, D) unit rows, random at initialisation (as MoCo and NNCLR).
        queue_ptr: () long, the next row to overwrite.

    Example:
        >>> q = FeatureQueue(8, 4)
        >>> q.push(torch.randn(3, 4))
        >>> int(q.queue_ptr), q.nearest(torch.randn(2, 4), k=2).shape
        (3, torch.Size([2, 2, 4]))
    """

    queue: Tensor
    queue_ptr: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size={size} and dim={dim} must be >= 1")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, x: Tensor) -> None:
        """Enqueue the (normalised, detached) rows of ``x`` from all processes.

        Shape:
            x: (B, D), world * B rows are written.
        """
        rows = F.normalize(gather_no_grad(x).to(self.queue.dtype), dim=1)  # (N, D)
        n, size = rows.shape[0], self.queue.shape[0]
        start = self.queue_ptr + max(n - size, 0)  # skip rows that would be overwritten
        rows = rows[-size:]  # (min(N, Q), D)
        idx = (start + torch.arange(rows.shape[0], device=rows.device)) % size
        self.queue.index_copy_(0, idx, rows)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    @torch.no_grad()
    def nearest(self, z: Tensor, k: int = 1) -> Tensor:
        """The ``k`` stored rows closest to each row of ``z`` (cosine), nearest first.

        Shape:
            z: (B, D) -> (B, k, D), no gradient.
        """
        sim = F.normalize(z.detach().float(), dim=1) @ self.queue.T  # (B, Q)
        idx = sim.topk(k, dim=1).indices  # (B, k)
        return self.queue[idx]  # (B, k, D)


def two_views(views: list[Tensor], method: str) -> tuple[Tensor, Tensor]:
    """The two global views; methods other than SimCLR take no multi-crop local views."""
    if len(views) != 2:
        raise ValueError(
            f"{method} takes exactly 2 augmented views, got {len(views)}; use a two-view "
            "augmentation preset (data.augment: simclr, byol or barlow)"
        )
    return views[0], views[1]


@torch.no_grad()
def momentum_forward(
    backbone: nn.Module, projector: nn.Module, views: list[Tensor]
) -> list[Tensor]:
    """Target projections of each view from the momentum encoder (no gradient).

    Shape:
        V x (B, 3, H, W) -> V x (B, D)
    """
    return [projector(backbone(v)) for v in views]
