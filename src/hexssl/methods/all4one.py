"""All4One (Estepa et al., ICCV 2023, arXiv:2303.09417): three symbiotic objectives.

Online network: backbone, projector (z), NNCLR predictor (p) and a second "centroid"
predictor (c). A momentum encoder gives normalised target projections t, and a support
queue of past view-0 targets provides each sample's k nearest neighbours NN_k(t_v).

- NNCLR term: InfoNCE(NN_1(t_0), p_1) and the symmetric direction, cross pairing.
- Centroid term: a small transformer encoder reads a sequence of k embeddings and its
  output at position 0 is the "centroid". The anchor is the centroid of NN_k(t_i); the
  candidate is the centroid of view j's sequence with its own c_j shifted in at
  position 0 (the official code's "shift operation"); InfoNCE, symmetric.
- Feature term: redundancy reduction over the feature dimension between the targets
  of one view and the online projections of the other
  (``hexssl.losses.all4one.feature_redundancy_loss``).

    L = 0.5 * L_nnclr + 0.5 * L_centroid + 5 * L_feature     (official weights)

HEX replaces the denominators of both contrastive terms (HEX_SPEC 6): each InfoNCE gets
its own copy of the configured denominator, so the two similarity distributions keep
separate threshold states (EMA); both share the warm-up and schedule via progress.

Simplifications, against the official code (a solo-learn fork):
- the positional encoding is a standard fixed sinusoid over the k sequence positions
  (the official code adds a sinusoid from the ``positional-encodings`` package);
- the transformer trains with the method's optimiser and LR (the official code gives
  it its own LR of 0.1);
- the feature term normalises columns over the global batch under data parallelism.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.heads import build_predictor, build_projector
from hexssl.losses.all4one import feature_redundancy_loss
from hexssl.losses.infonce import InfoNCE
from hexssl.methods.base import SSLMethod, StepOutput
from hexssl.methods.common import FeatureQueue, momentum_forward, two_views

PAIRS = ((0, 1), (1, 0))  # (anchor view, candidate view) of the symmetric losses


def sinusoid(length: int, dim: int) -> Tensor:
    """Fixed sinusoidal positional encoding (Vaswani et al. 2017, sec. 3.5).

    Shape:
        -> (length, dim)
    """
    pos = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)  # (L, ceil(D/2))
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class CentroidEncoder(nn.Module):
    """Transformer encoder over k embeddings; its output at position 0 is the centroid.

    Args:
        dim: embedding width D (divisible by ``heads``).
        length: sequence length k (the number of neighbours).
        layers, heads, dropout: ``nn.TransformerEncoder`` settings (official: 3, 8, 0.1;
            feed-forward width 2D).

    Shape:
        (B, k, D) -> (B, D)

    Example:
        >>> enc = CentroidEncoder(32, length=5, layers=1, heads=4, dropout=0.0)
        >>> enc(torch.randn(2, 5, 32)).shape
        torch.Size([2, 32])
    """

    pos: Tensor

    def __init__(self, dim: int, length: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"attn_heads={heads} must divide the projection width {dim}")
        if length < 1 or layers < 1:
            raise ValueError(f"num_neighbours={length} and attn_layers={layers} must be >= 1")
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.register_buffer("pos", sinusoid(length, dim), persistent=False)

    def forward(self, seq: Tensor) -> Tensor:
        out: Tensor = self.encoder(seq + self.pos.to(seq.dtype))  # (B, k, D)
        return out[:, 0]


@dataclass
class All4OneParams:
    """All4One hyperparameters (official code defaults).

    temperature: NNCLR term, 0.1 as NNCLR (arXiv:2104.14548); centroid_temperature:
    0.1 (the official code calls the NNCLR loss with its default there);
    queue_size 65536; projector 2048-2048-256 and predictors 4096 -> 256 (NNCLR's);
    num_neighbours 5; transformer 3 layers, 8 heads, dropout 0.1; weights 0.5 / 0.5 / 5;
    momentum_base 0.99 (cosine to 1).
    """

    temperature: float = 0.1
    centroid_temperature: float = 0.1
    queue_size: int = 65536
    proj_hidden: int = 2048
    proj_out: int = 256
    pred_hidden: int = 4096
    num_neighbours: int = 5
    attn_layers: int = 3
    attn_heads: int = 8
    attn_dropout: float = 0.1
    nnclr_weight: float = 0.5
    centroid_weight: float = 0.5
    feature_weight: float = 5.0
    momentum_base: float = 0.99


class All4One(SSLMethod):
    """All4One. Example config: ``method: {name: all4one, params: {num_neighbours: 5}}``."""

    Params = All4OneParams
    contrastive = True
    default_augment = "byol"  # as NNCLR, which All4One builds on

    def build(self) -> None:
        p = self.params
        if not 1 <= p.num_neighbours <= p.queue_size:
            raise ValueError(f"num_neighbours={p.num_neighbours} must be in [1, queue_size]")
        self.projector = build_projector("all4one", self.num_features, p.proj_hidden, p.proj_out)
        self.predictor = build_predictor("all4one", p.proj_out, p.pred_hidden, p.proj_out)
        self.centroid_predictor = build_predictor("all4one", p.proj_out, p.pred_hidden, p.proj_out)
        self.momentum_backbone = self.make_momentum(self.backbone)
        self.momentum_projector = self.make_momentum(self.projector)
        self.centroid = CentroidEncoder(
            p.proj_out, p.num_neighbours, p.attn_layers, p.attn_heads, p.attn_dropout
        )
        self.support = FeatureQueue(p.queue_size, p.proj_out)
        self.nnclr_loss = InfoNCE(p.temperature, self.denominator)
        # its own copy: the centroid similarities have their own distribution, so their
        # threshold state (EMA) must not be shared with the NNCLR term's (issue 10)
        self.centroid_loss = InfoNCE(p.centroid_temperature, copy.deepcopy(self.denominator))

    def ssl_step(self, views: list[Tensor]) -> StepOutput:
        p = self.params
        x = two_views(views, "all4one")
        feats = [self.backbone(v) for v in x]  # 2 x (B, F)
        z = [self.projector(f) for f in feats]  # 2 x (B, D)
        t = momentum_forward(self.momentum_backbone, self.momentum_projector, list(x))
        t = [F.normalize(ti, dim=1) for ti in t]  # 2 x (B, D) unit targets
        nn_k = [self.support.nearest(ti, p.num_neighbours) for ti in t]  # 2 x (B, k, D)
        nnclr = self._nnclr_term(z, nn_k)
        centroid = self._centroid_term(z, nn_k)
        feature = feature_redundancy_loss((t[0], t[1]), (z[0], z[1]))
        loss = p.nnclr_weight * nnclr + p.centroid_weight * centroid + p.feature_weight * feature
        self.support.push(t[0])
        return StepOutput(loss, feats[0], (z[0], z[1]))

    def hex_views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The NNCLR term's pair: NN of the momentum target against the prediction.

        (The centroid term shares the same threshold module; its tensors are not shown.)
        """
        t = F.normalize(self.momentum_projector(self.momentum_backbone(x)), dim=1)  # (N, D)
        neighbour = self.support.nearest(t)[:, 0]  # (N, D)
        return neighbour, self.predictor(self.projector(self.backbone(x)))

    def _nnclr_term(self, z: list[Tensor], nn_k: list[Tensor]) -> Tensor:
        """NNCLR: nearest neighbour of view i against the predictions of view j."""
        pred = [self.predictor(zi) for zi in z]  # 2 x (B, D)
        losses = [self.nnclr_loss(nn_k[i][:, 0], pred[j], "cross") for i, j in PAIRS]
        return (losses[0] + losses[1]) / 2

    def _centroid_term(self, z: list[Tensor], nn_k: list[Tensor]) -> Tensor:
        """Centroid of view i's neighbours against view j's own-prediction centroid."""
        rich = [self.centroid(n) for n in nn_k]  # 2 x (B, D)
        own = [self.centroid_predictor(zi)[:, None] for zi in z]  # 2 x (B, 1, D)
        shifted = [torch.cat([o, n[:, :-1]], 1) for o, n in zip(own, nn_k)]  # 2 x (B, k, D)
        cands = [self.centroid(s) for s in shifted]  # 2 x (B, D)
        losses = [self.centroid_loss(rich[i], cands[j], "cross") for i, j in PAIRS]
        return (losses[0] + losses[1]) / 2
