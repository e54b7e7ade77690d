"""VICReg (Bardes, Ponce, LeCun 2022, arXiv:2105.04906).

Both views go through the same backbone and expander (projector); the loss combines
invariance, variance and covariance terms (see ``hexssl.losses.vicreg``). VICReg has no
denominator: with HEX enabled, the base class adds a HEX-InfoNCE term on the projector
outputs (HEX_SPEC 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_projector
from hexssl.losses.vicreg import VICRegLoss
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import two_views


@dataclass
class VICRegParams:
    """VICReg hyperparameters (arXiv:2105.04906 sec. 4.2).

    expander 8192-8192-8192; weights sim 25, var 25, cov 1; eps 1e-4; gamma 1.
    """

    proj_hidden: int = 8192
    proj_out: int = 8192
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    eps: float = 1e-4
    gamma: float = 1.0


class VICReg(SSLMethod):
    """VICReg. Example config: ``method: {name: vicreg, params: {cov_weight: 1.0}}``."""

    Params = VICRegParams
    contrastive = False
    default_augment = "byol"  # VICReg follows BYOL's augmentations (arXiv:2105.04906)

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("vicreg", self.num_features, p.proj_hidden, p.proj_out)
        self.loss_fn = VICRegLoss(p.sim_weight, p.var_weight, p.cov_weight, p.eps, p.gamma)

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "vicreg")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        return StepOutput(self.loss_fn(z[0], z[1]), feats[0], (z[0], z[1]))
