"""VICReg: variance-invariance-covariance regularisation (Bardes et al. 2022, arXiv:2105.04906).

    inv = mean_{b,d} (z0_bd - z1_bd)^2                                   eq. 5
    var = mean_d relu(gamma - sqrt(Var_b(z_d) + eps)), averaged over views eq. 1
    cov = sum_{i != j} Cov(z)_ij^2 / D, summed over views                eq. 3-4
    L   = sim_weight * inv + var_weight * var + cov_weight * cov         eq. 6

Weights 25 / 25 / 1, eps 1e-4, gamma 1 as in the paper (sec. 4.2) and the official code
(which averages the variance term of the two views and sums their covariance terms).

Data parallel: as in the official code, the invariance term uses the local batch (it is
a per-sample mean, so its data-parallel average is the global mean), while the variance
and covariance are statistics of the **global** batch: both views are gathered from
every process with ``gather_with_grad`` first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.losses.barlow import check_two_views, off_diagonal
from hexssl.losses.distributed import gather_with_grad


def variance_term(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Hinge on the per-feature std, ``mean_d relu(gamma - std_d)``.

    Shape:
        (N, D) -> ()
    """
    std = torch.sqrt(z.var(0) + eps)  # (D,) unbiased, as torch.var in the official code
    return F.relu(gamma - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances over D.

    Shape:
        (N, D) -> ()
    """
    n, d = z.shape
    zc = z - z.mean(0, keepdim=True)  # (N, D)
    cov = zc.T @ zc / (n - 1)  # (D, D)
    return off_diagonal(cov).pow(2).sum() / d


class VICRegLoss(nn.Module):
    """VICReg loss on two batches of projector outputs.

    Args:
        sim_weight: lambda, weight of the invariance term (25).
        var_weight: mu, weight of the variance term (25).
        cov_weight: nu, weight of the covariance term (1).
        eps: added to the variance before the square root (1e-4).
        gamma: target standard deviation (1).

    Shape:
        z0, z1: (B, D) with B >= 2 -> ()

    Example:
        >>> import torch
        >>> loss_fn = VICRegLoss()
        >>> z = torch.randn(64, 32)
        >>> float(loss_fn(z, z)) < float(loss_fn(z, torch.randn(64, 32)))
        True
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in dict(
            sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight
        ).items():
            if value < 0:
                raise ValueError(f"{name}={value} must be >= 0 (paper: 25 / 25 / 1)")
        if eps <= 0 or gamma <= 0:
            raise ValueError(f"eps={eps} and gamma={gamma} must be > 0 (paper: 1e-4, 1)")
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight
        self.eps, self.gamma = eps, gamma

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        check_two_views(z0, z1)
        with torch.autocast(z0.device.type, enabled=False):  # float32 under mixed precision
            return self._terms(z0.float(), z1.float())

    def _terms(self, z0: Tensor, z1: Tensor) -> Tensor:
        inv = F.mse_loss(z0, z1)  # local batch, as the official code
        g0, g1 = gather_with_grad(z0), gather_with_grad(z1)  # (N, D) global batch
        var = (
            variance_term(g0, self.gamma, self.eps) + variance_term(g1, self.gamma, self.eps)
        ) / 2
        cov = covariance_term(g0) + covariance_term(g1)
        return self.sim_weight * inv + self.var_weight * var + self.cov_weight * cov
