"""BYOL (Grill et al. 2020, arXiv:2006.07733 sec. 3).

The online network (backbone, projector, predictor) predicts the momentum encoder's
projection of the other view; the loss is symmetrised by summing both directions:

    L = byol(q_0, z'_1) + byol(q_1, z'_0),     byol(p, z) = mean(2 - 2 cos(p, z))

BYOL has no denominator: with HEX enabled, the base class adds a HEX-InfoNCE term on
the projector outputs (HEX_SPEC 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_predictor, build_projector
from hexssl.losses.byol import BYOLLoss
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import momentum_forward, two_views


@dataclass
class BYOLParams:
    """BYOL hyperparameters (arXiv:2006.07733 sec. 3.3).

    projector and predictor 4096 -> 256 with BN; momentum_base 0.99, raised to 1 on a
    cosine (the paper uses 0.996 for ImageNet at batch 4096; 0.99 is solo-learn's
    setting for CIFAR and ImageNet-100 at batch 256).
    """

    proj_hidden: int = 4096
    proj_out: int = 256
    pred_hidden: int = 4096
    momentum_base: float = 0.99


class BYOL(SSLMethod):
    """BYOL. Example config: ``method: {name: byol, params: {momentum_base: 0.996}}``."""

    Params = BYOLParams
    contrastive = False
    default_augment = "byol"

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("byol", self.num_features, p.proj_hidden, p.proj_out)
        self.predictor = build_predictor("byol", p.proj_out, p.pred_hidden, p.proj_out)
        self.momentum_backbone = self.make_momentum(self.backbone)
        self.momentum_projector = self.make_momentum(self.projector)
        self.loss_fn = BYOLLoss()

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "byol")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        q = [self.predictor(zi) for zi in z]  # 2 x (B, D)
        t = momentum_forward(self.momentum_backbone, self.momentum_projector, list(x))
        loss = self.loss_fn(q[0], t[1]) + self.loss_fn(q[1], t[0])
        return StepOutput(loss, feats[0], (z[0], z[1]))
