"""Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, arXiv:2103.03230 eq. 1).

    C_ij = sum_b zn0_bi zn1_bj / N          zn = per-feature batch-normalised z
    L    = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

The normalisation is the non-affine BatchNorm the official code applies to the
projector output inside the loss (batch mean 0, biased batch std 1, eps 1e-5), written
out here so that it normalises over the **global** batch: under data-parallel training
both embeddings are first gathered from every process (``gather_with_grad``), which is
what the official code's SyncBatchNorm plus the all-reduce of C compute. Every process
then holds the same global loss; the gather's backward sums the gradients, and the
data-parallel average of those sums is the gradient of that one loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hexssl.losses.distributed import gather_with_grad

BN_EPS = 1e-5  # nn.BatchNorm1d's default, as in the official code


def batch_standardise(z: Tensor, eps: float = BN_EPS) -> Tensor:
    """Per-feature ``(z - mean) / sqrt(var + eps)`` over the batch (non-affine BN, train mode).

    Shape:
        (N, D) -> (N, D)
    """
    mean = z.mean(0, keepdim=True)  # (1, D)
    var = z.var(0, unbiased=False, keepdim=True)  # (1, D)
    return (z - mean) / torch.sqrt(var + eps)


def off_diagonal(c: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened.

    Shape:
        (D, D) -> (D * (D - 1),)
    """
    d = c.shape[0]
    return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def cross_correlation(z0: Tensor, z1: Tensor) -> Tensor:
    """Cross-correlation C of the two views over the global batch, in float32.

    Shape:
        z0, z1: (B, D) -> (D, D)
    """
    with torch.autocast(z0.device.type, enabled=False):  # float32 under mixed precision
        a = batch_standardise(gather_with_grad(z0).float())  # (N, D), N = world * B
        b = batch_standardise(gather_with_grad(z1).float())  # (N, D)
        return a.T @ b / a.shape[0]  # (D, D)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss: invariance on the diagonal of C, redundancy reduction off it.

    Args:
        lambda_offdiag: weight of the off-diagonal term (paper: 0.0051, sec. 4).
        scale_loss: a final multiplier (1.0 in the paper; solo-learn's CIFAR configs
            use 0.1, an early official release 1/32 with lambda 3.9e-3).

    Shape:
        z0, z1: (B, D) projector outputs of two views (B >= 2) -> ()

    Example:
        >>> import torch
        >>> loss_fn = BarlowTwinsLoss()
        >>> z = torch.randn(64, 32)
        >>> loss_fn(z, z) < loss_fn(z, torch.randn(64, 32))
        tensor(True)
    """

    def __init__(self, lambda_offdiag: float = 0.0051, scale_loss: float = 1.0) -> None:
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag={lambda_offdiag} must be >= 0 (paper: 0.0051)")
        if scale_loss <= 0:
            raise ValueError(f"scale_loss={scale_loss} must be > 0 (paper: 1.0)")
        self.lambda_offdiag, self.scale_loss = lambda_offdiag, scale_loss

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        check_two_views(z0, z1)
        c = cross_correlation(z0, z1)  # (D, D)
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return self.scale_loss * (on_diag + self.lambda_offdiag * off_diag)


def check_two_views(z0: Tensor, z1: Tensor) -> None:
    """Two (B, D) embeddings of equal shape with B >= 2 (batch statistics need two rows)."""
    if z0.ndim != 2 or z0.shape != z1.shape:
        raise ValueError(
            f"need two (B, D) tensors of equal shape; got {tuple(z0.shape)}, {tuple(z1.shape)}"
        )
    if z0.shape[0] < 2:
        raise ValueError(f"batch statistics need B >= 2 samples, got B={z0.shape[0]}")
