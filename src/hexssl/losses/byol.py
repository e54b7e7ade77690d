"""BYOL's normalised regression loss (Grill et al. 2020, arXiv:2006.07733 eq. 2).

    L = mean_i || p_i/|p_i| - z_i/|z_i| ||^2 = mean_i (2 - 2 cos(p_i, z_i))

The target ``z`` comes from the momentum encoder; the method computes it under
``torch.no_grad()``, so this loss does not detach it itself.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Mean of ``2 - 2 cos(p_i, z_i)`` over the batch.

    Shape:
        p, z: (B, D) -> ()
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(
            f"need two (B, D) tensors of equal shape; got {tuple(p.shape)}, {tuple(z.shape)}"
        )
    cos = F.cosine_similarity(p.float(), z.float(), dim=1)  # (B,)
    return (2.0 - 2.0 * cos).mean()


class BYOLLoss(nn.Module):
    """``2 - 2 cos`` between predictions and targets, in [0, 4] (arXiv:2006.07733 eq. 2).

    Example:
        >>> import torch
        >>> p = torch.randn(8, 256)
        >>> abs(float(BYOLLoss()(p, 3 * p))) < 1e-5  # same direction: zero loss
        True
        >>> round(float(BYOLLoss()(p, -p)), 4)  # opposite direction: the maximum
        4.0
    """

    def forward(self, p: Tensor, z: Tensor) -> Tensor:
        """Shape: p (online prediction) (B, D), z (target projection) (B, D) -> ()."""
        return byol_loss(p, z)
