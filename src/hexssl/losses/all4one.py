"""All4One's feature term: redundancy reduction over the feature dimension.

Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via Self-Attention and
Redundancy Reduction", ICCV 2023 (arXiv:2303.09417). Each feature column is
L2-normalised over the batch, and the (D, D) correlation between the target projection
of one view and the online projection of the other is pushed towards the identity:

    C = norm_0(t_a)^T norm_0(z_b)                (D, D), norm_0 = L2 over the batch
    on  = sqrt( mean_pairs mean_d (C_dd - 1)^2 )
    off = sqrt( mean_pairs mean_{d != e} C_de^2 )
    L   = (on + off) / 2

as in the official code (which multiplies this by 10 and then by 0.5; the method's
``feature_weight`` = 5 carries that). Under data-parallel training the columns are
normalised over the global batch (``gather_with_grad``), a choice of ours: the
official single-GPU code uses the local batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hexssl.losses.barlow import check_two_views, off_diagonal
from hexssl.losses.distributed import gather_with_grad


def column_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Correlation of batch-normalised feature columns over the global batch.

    Shape:
        a, b: (B, D) -> (D, D)
    """
    with torch.autocast(a.device.type, enabled=False):  # float32 under mixed precision
        a = F.normalize(gather_with_grad(a).float(), dim=0)  # (N, D) unit columns
        b = F.normalize(gather_with_grad(b).float(), dim=0)  # (N, D)
        return a.T @ b  # (D, D)


def feature_redundancy_loss(
    targets: tuple[Tensor, Tensor], online: tuple[Tensor, Tensor]
) -> Tensor:
    """All4One feature term over the pairs (targets[0], online[1]) and (targets[1], online[0]).

    Shape:
        each of targets, online: (B, D) -> ()

    Example:
        >>> z0, z1 = torch.randn(32, 16), torch.randn(32, 16)
        >>> float(feature_redundancy_loss((z0, z1), (z0, z1))) > 0
        True
    """
    check_two_views(*targets)
    check_two_views(*online)
    cs = [column_correlation(targets[0], online[1]), column_correlation(targets[1], online[0])]
    on = torch.stack([(torch.diagonal(c) - 1).pow(2).mean() for c in cs]).mean().sqrt()
    off = torch.stack([off_diagonal(c).pow(2).mean() for c in cs]).mean().sqrt()
    return (on + off) / 2
