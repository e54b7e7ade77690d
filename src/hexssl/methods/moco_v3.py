"""MoCo v3 (Chen, Xie, He 2021, arXiv:2104.02057, Algorithm 1).

Queries q_v = predictor(projector(backbone(x_v))), keys k_v = the momentum encoder's
projections (backbone + projector, no predictor). No queue: the other keys of the
(gathered) batch are the negatives. As in the paper's pseudocode the loss is the sum
over both directions, each scaled by 2T:

    L = 2T * ( InfoNCE(q_0, k_1) + InfoNCE(q_1, k_0) )

HEX replaces the denominator over the batch keys (HEX_SPEC 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_predictor, build_projector
from hexssl.losses.infonce import InfoNCE
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import momentum_forward, two_views


@dataclass
class MoCoV3Params:
    """MoCo v3 hyperparameters.

    temperature 0.2 (the paper's ViT setting and solo-learn's; the official ResNet-50
    recipe uses 1.0); momentum_base 0.99, raised to 1 on a cosine (official ResNet-50
    recipe); projector 3 x 4096 -> 256 and predictor 4096 -> 256 with BN (sec. 4).
    """

    temperature: float = 0.2
    proj_hidden: int = 4096
    proj_out: int = 256
    pred_hidden: int = 4096
    momentum_base: float = 0.99


class MoCoV3(SSLMethod):
    """MoCo v3. Example config: ``method: {name: moco_v3, params: {temperature: 0.2}}``."""

    Params = MoCoV3Params
    contrastive = True
    default_augment = "byol"  # MoCo v3 uses BYOL's augmentations (arXiv:2104.02057 sec. 4)

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("moco_v3", self.num_features, p.proj_hidden, p.proj_out)
        self.predictor = build_predictor("moco_v3", p.proj_out, p.pred_hidden, p.proj_out)
        self.momentum_backbone = self.make_momentum(self.backbone)
        self.momentum_projector = self.make_momentum(self.projector)
        self.loss_fn = InfoNCE(p.temperature, self.denominator)

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "moco_v3")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        q = [self.predictor(zi) for zi in z]  # 2 x (B, D)
        k = momentum_forward(self.momentum_backbone, self.momentum_projector, list(x))
        pair_losses = [self.loss_fn(q[i], k[j], "cross") for i, j in ((0, 1), (1, 0))]
        loss = 2 * self.params.temperature * (pair_losses[0] + pair_losses[1])
        return StepOutput(loss, feats[0], (z[0], z[1]))

    def hex_views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """HEX compares queries (predictor outputs) with momentum keys. (N, D), (N, D)."""
        q = self.predictor(self.projector(self.backbone(x)))  # (N, D)
        return q, self.momentum_projector(self.momentum_backbone(x))
