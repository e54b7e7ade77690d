"""Data-parallel helpers for losses: differentiable all-gather and global means.

Every helper is a no-op when ``torch.distributed`` is not initialised, so losses are
written once and behave the same on one process or many (HEX_SPEC 2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size), (0, 1) outside data-parallel training."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over processes.

    Each process's loss depends on every process's candidates, so the gradient of the
    local slice is the sum over processes of d(loss_p)/d(slice): an all-reduce of the
    full gradient followed by taking our own rows.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)  # (world * n, ...)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients.

    All processes must pass the same shape. Shape: (n, ...) -> (world * n, ...).
    """
    if not is_distributed():
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (detached) from every process along dim 0."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def global_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over all elements on all processes (no gradient).

    Shape: (n,) -> ().
    """
    v = values.detach() if values.requires_grad else values
    v = v if v.dtype in (torch.float32, torch.float64) else v.float()
    if not is_distributed():
        return v.mean() if v.numel() else v.new_tensor(0.0)
    stats = torch.stack([v.sum(), v.new_tensor(v.numel())])
    if is_distributed():
        dist.all_reduce(stats, op=dist.ReduceOp.SUM)
    return stats[0] / stats[1].clamp_min(1.0)
