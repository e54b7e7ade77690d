"""MoCo v2+ (Chen et al. 2020, arXiv:2003.04297; symmetric "v2+" loss as in solo-learn).

Queries q_v = projector(backbone(x_v)) and keys k_v = the momentum copies of both, for
the two views v. The symmetric loss contrasts the query of one view with the key of the
other, with that view's queue of past keys as extra negatives:

    L = ( InfoNCE(q_0, k_1; queue_1) + InfoNCE(q_1, k_0; queue_0) ) / 2

after which the batch keys (gathered from every process) are enqueued. The candidates
are all keys of the (gathered) batch plus the queue (HEX_SPEC 2), so besides the queue
the other B - 1 batch keys are negatives too; the original MoCo contrasts the positive
key with the queue alone. HEX replaces
the denominator over keys and queue (HEX_SPEC 6), so neighbours can come from the
queue. One queue per view, as solo-learn's MoCo v2+. Note that the superclass-oracle
threshold rejects a queue (the queue carries no labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from hexssl.heads import build_projector
from hexssl.losses.infonce import InfoNCE
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import FeatureQueue, momentum_forward, two_views


@dataclass
class MoCoV2Params:
    """MoCo v2+ hyperparameters.

    temperature 0.2 (arXiv:2003.04297 sec. 3); queue_size 65536 (MoCo's ImageNet K;
    any size works, the write position wraps around); momentum_base 0.99, raised to 1
    on a cosine (solo-learn's v2+; the paper's constant is 0.999); projector 2048 -> 128
    without BN (the MoCo v2 MLP head).
    """

    temperature: float = 0.2
    queue_size: int = 65536
    proj_hidden: int = 2048
    proj_out: int = 128
    momentum_base: float = 0.99


class MoCoV2(SSLMethod):
    """MoCo v2+. Example config: ``method: {name: moco_v2, params: {queue_size: 4096}}``."""

    Params = MoCoV2Params
    contrastive = True
    default_augment = "simclr"

    def build(self) -> None:
        p = self.params
        self.projector = build_projector("moco_v2", self.num_features, p.proj_hidden, p.proj_out)
        self.momentum_backbone = self.make_momentum(self.backbone)
        self.momentum_projector = self.make_momentum(self.projector)
        self.queues = nn.ModuleList(FeatureQueue(p.queue_size, p.proj_out) for _ in range(2))
        self.loss_fn = InfoNCE(p.temperature, self.denominator)

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        x = two_views(views, "moco_v2")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        q = [self.projector(f) for f in feats]  # 2 x (B, D)
        k = momentum_forward(self.momentum_backbone, self.momentum_projector, list(x))
        # A copy of each queue: the push below is in place and the loss is not yet backpropagated.
        negatives = [self.queue(v).queue.clone() for v in (0, 1)]  # 2 x (Q, D)
        losses = [
            self.loss_fn(q[i], k[j], "cross", negatives=negatives[j]) for i, j in ((0, 1), (1, 0))
        ]
        for v in (0, 1):
            self.queue(v).push(k[v])
        return StepOutput((losses[0] + losses[1]) / 2, feats[0], (q[0], q[1]))

    def hex_views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Queries against the batch's momentum keys (the queue, unlabelled, is left out)."""
        q = self.projector(self.backbone(x))  # (N, D)
        return q, self.momentum_projector(self.momentum_backbone(x))

    def queue(self, view: int) -> FeatureQueue:
        """The queue of past keys of ``view`` (0 or 1)."""
        queue: FeatureQueue = self.queues[view]  # type: ignore[assignment]
        return queue
