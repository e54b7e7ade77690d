"""SimCLR (Chen et al. 2020, arXiv:2002.05709): NT-Xent over 2B views.

HEX replaces the NT-Xent denominator (HEX_SPEC 6): it is the ``denominator`` handed in.
With more than two views (multi-crop), each local crop is also contrasted with both
global views and the losses are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hexssl.heads import build_projector
from hexssl.losses.infonce import InfoNCE
from hexssl.methods.base import SSLMethod, StepOutput


@dataclass
class SimCLRParams:
    """SimCLR hyperparameters (temperature 0.1 as in the HEX reference configs)."""

    temperature: float = 0.1
    proj_hidden: int = 2048
    proj_out: int = 128
    projector: str = "simclr"  # a heads preset; "moco_v2" has no BatchNorm


class SimCLR(SSLMethod):
    """SimCLR. Example config: ``method: {name: simclr, params: {temperature: 0.1}}``."""

    Params = SimCLRParams
    default_augment = "simclr"

    def build(self) -> None:
        p = self.params
        self.projector = build_projector(p.projector, self.num_features, p.proj_hidden, p.proj_out)
        self.loss_fn = InfoNCE(p.temperature, self.denominator)

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        feats = [self.backbone(v) for v in views]  # V x (B, F)
        z = [self.projector(f) for f in feats]  # V x (B, D)
        pairs = [(0, 1)] + [(g, v) for v in range(2, len(z)) for g in (0, 1)]
        losses = [self.loss_fn(z[a], z[b]) for a, b in pairs]
        loss: Tensor = sum(losses) / len(losses)
        return StepOutput(loss, feats[0], (z[0], z[1]))
