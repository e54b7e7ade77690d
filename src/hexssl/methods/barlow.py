"""Barlow Twins (Zbontar et al. 2021, arXiv:2103.03230).

Both views go through the same backbone and projector; the loss drives the
cross-correlation of the (batch-normalised, global-batch) projections to the identity
(see ``hexssl.losses.barlow``). Barlow Twins has no denominator: with HEX enabled, the
base class adds a HEX-InfoNCE term on the projector outputs (HEX_SPEC 6; the reference
used alpha = 0.1, T = 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_projector
from hexssl.losses.barlow import BarlowTwinsLoss
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import two_views


@dataclass
class BarlowTwinsParams:
    """Barlow Twins hyperparameters (arXiv:2103.03230 sec. 4).

    projector 8192-8192-8192 (BN + ReLU on the hidden layers); lambda_offdiag 0.0051;
    scale_loss 1.0 (solo-learn's CIFAR configs use 0.1).
    """

    proj_hidden: int = 8192
    proj_out: int = 8192
    lambda_offdiag: float = 0.0051
    scale_loss: float = 1.0


class BarlowTwins(SSLMethod):
    """Barlow Twins. Example config: ``method: {name: barlow, params: {scale_loss: 0.1}}``."""

    Params = BarlowTwinsParams
    contrastive = False
    default_augment = "barlow"

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("barlow", self.num_features, p.proj_hidden, p.proj_out)
        self.loss_fn = BarlowTwinsLoss(p.lambda_offdiag, p.scale_loss)

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "barlow")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        return StepOutput(self.loss_fn(z[0], z[1]), feats[0], (z[0], z[1]))
