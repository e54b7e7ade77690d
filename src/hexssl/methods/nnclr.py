"""NNCLR (Dwibedi et al. 2021, arXiv:2104.14548 eq. 2 and Algorithm 1).

The anchor of image i is the nearest neighbour NN(z_0i) of its view-0 projection in a
support set of past view-0 projections (cosine similarity, no gradient); the
candidates are the predictions p_1 of view 1, the positive being p_1i:

    L = ( InfoNCE(NN(z_0), p_1) + InfoNCE(NN(z_1), p_0) ) / 2     cross pairing, B x B

after which the batch's view-0 projections (gathered from every process) enter the
support set. HEX replaces the B x B denominator (HEX_SPEC 6). With ``stacked=True``
each direction is instead a SimCLR-style 2B x 2B matrix over [NN(z_0); p_1], as the
HEX reference code did; both directions are still averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_predictor, build_projector
from hexssl.losses.infonce import InfoNCE
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import FeatureQueue, two_views


@dataclass
class NNCLRParams:
    """NNCLR hyperparameters (arXiv:2104.14548 sec. 4.1).

    temperature 0.1; support set (queue_size) 98304; projector 2048-2048-256 with BN
    and predictor 4096 -> 256; ``stacked`` picks the 2B x 2B variant (HEX_SPEC 6).
    """

    temperature: float = 0.1
    queue_size: int = 98304
    proj_hidden: int = 2048
    proj_out: int = 256
    pred_hidden: int = 4096
    stacked: bool = False


class NNCLR(SSLMethod):
    """NNCLR. Example config: ``method: {name: nnclr, params: {queue_size: 16384}}``."""

    Params = NNCLRParams
    contrastive = True
    default_augment = "byol"  # NNCLR uses BYOL's augmentations (arXiv:2104.14548 sec. 4.1)

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("nnclr", self.num_features, p.proj_hidden, p.proj_out)
        self.predictor = build_predictor("nnclr", p.proj_out, p.pred_hidden, p.proj_out)
        self.support = FeatureQueue(p.queue_size, p.proj_out)
        self.loss_fn = InfoNCE(p.temperature, self.denominator)
        self.pairing = "simclr" if p.stacked else "cross"

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "nnclr")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        p = [self.predictor(zi) for zi in z]  # 2 x (B, D)
        nn = [self.support.nearest(zi)[:, 0] for zi in z]  # 2 x (B, D), no gradient
        losses = [self.loss_fn(nn[i], p[j], self.pairing) for i, j in ((0, 1), (1, 0))]
        self.support.push(z[0])
        return StepOutput((losses[0] + losses[1]) / 2, feats[0], (z[0], z[1]))

    def hex_views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest support-set neighbours NN(z) against the predictions p. (N, D), (N, D)."""
        z = self.projector(self.backbone(x))  # (N, D)
        return self.support.nearest(z)[:, 0], self.predictor(z)
