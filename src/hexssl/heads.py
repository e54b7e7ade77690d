"""Projector and predictor MLPs with each paper's preset architecture.

A preset fixes depth, widths and where BatchNorm and biases go; ``hidden_dim`` and
``out_dim`` may be overridden (e.g. small heads for CPU runs). Presets are plain data in
two registry dicts, ``PROJECTORS`` and ``PREDICTORS``, resolved once by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from torch import nn

__all__ = ["MLP", "PREDICTORS", "PROJECTORS", "HeadSpec", "build_predictor", "build_projector"]


def _linear_bn_relu(in_dim: int, out_dim: int, bn: bool, bias: bool) -> list[nn.Module]:
    """One hidden layer: ``Linear [-> BN] -> ReLU``."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm1d(out_dim))
    return [*layers, nn.ReLU(inplace=True)]


class MLP(nn.Sequential):
    """``num_layers`` Linear layers; every one but the last is followed by [BN ->] ReLU.

    Args:
        in_dim: input width.
        hidden_dim: width of the ``num_layers - 1`` hidden layers (unused if 1 layer).
        out_dim: output width.
        num_layers: number of Linear layers (>= 1).
        hidden_bn: BatchNorm1d after each hidden Linear.
        last_bn: BatchNorm1d after the last Linear.
        last_bn_affine: whether that last BN learns a scale and shift (MoCo v3 does not).
        hidden_bias: bias in hidden Linears (redundant before BN; some papers drop it).
        last_bias: bias in the last Linear.

    Shape:
        (B, in_dim) -> (B, out_dim)

    Example:
        >>> import torch
        >>> head = MLP(512, 2048, 128, num_layers=2)  # SimCLR projector
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        *,
        hidden_bn: bool = True,
        last_bn: bool = False,
        last_bn_affine: bool = True,
        hidden_bias: bool = True,
        last_bias: bool = True,
    ) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers)
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        layers: list[nn.Module] = []
        for d_in, d_out in pairwise(dims):
            layers += _linear_bn_relu(d_in, d_out, hidden_bn, hidden_bias)
        layers.append(nn.Linear(dims[-1], out_dim, bias=last_bias))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
        super().__init__(*layers)


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class HeadSpec:
    """A paper's head architecture: the ``MLP`` arguments other than ``in_dim``."""

    num_layers: int
    hidden_dim: int
    out_dim: int
    hidden_bn: bool = True
    last_bn: bool = False
    last_bn_affine: bool = True
    hidden_bias: bool = True
    last_bias: bool = True


# BYOL (arXiv:2006.07733 sec. 3.3): Linear(4096)-BN-ReLU-Linear(256), predictor the same.
_BYOL = HeadSpec(2, 4096, 256)
# NNCLR (arXiv:2104.14548 sec. 4.1): projector [2048, 2048, d], BN after every Linear and
# ReLU after all but the last; predictor [4096, d], without a last BN as in solo-learn.
# All4One (arXiv:2303.09417) reuses both.
_NNCLR_PROJ = HeadSpec(3, 2048, 256, last_bn=True)
_NNCLR_PRED = HeadSpec(2, 4096, 256)

PROJECTORS: dict[str, HeadSpec] = {
    # SimCLR (arXiv:2002.05709 sec. 2.1; official code adds BN): Linear-BN-ReLU-Linear(128).
    "simclr": HeadSpec(2, 2048, 128),
    # MoCo v2 (arXiv:2003.04297 sec. 3): 2-layer MLP head with ReLU and no BN.
    "moco_v2": HeadSpec(2, 2048, 128, hidden_bn=False),
    # MoCo v3 (arXiv:2104.02057 sec. 4 and official _build_mlp): 3 layers of 4096, out 256,
    # BN on every layer, the last one without affine; Linears have no bias before BN.
    # (The official repo later used 2 layers for ResNets: pass through MLP to get that.)
    "moco_v3": HeadSpec(
        3, 4096, 256, last_bn=True, last_bn_affine=False, hidden_bias=False, last_bias=False
    ),
    "byol": _BYOL,
    "nnclr": _NNCLR_PROJ,
    # Barlow Twins (arXiv:2103.03230 sec. 2 and official code): 8192-8192-8192 with BN+ReLU
    # after the first two; every Linear has bias=False in the official code.
    "barlow": HeadSpec(3, 8192, 8192, hidden_bias=False, last_bias=False),
    # VICReg (arXiv:2105.04906 sec. 4.2 and official Projector): 8192-8192-8192, BN+ReLU on
    # the hidden layers, last Linear without bias.
    "vicreg": HeadSpec(3, 8192, 8192, last_bias=False),
    "all4one": _NNCLR_PROJ,
}

PREDICTORS: dict[str, HeadSpec] = {
    # MoCo v3 (arXiv:2104.02057 sec. 4): 2-layer predictor 4096 -> 256, no last BN.
    "moco_v3": HeadSpec(2, 4096, 256, hidden_bias=False, last_bias=False),
    "byol": _BYOL,
    "nnclr": _NNCLR_PRED,
    "all4one": _NNCLR_PRED,
}


def _build(
    registry: dict[str, HeadSpec],
    kind: str,
    preset: str,
    in_dim: int,
    hidden_dim: int | None,
    out_dim: int | None,
) -> MLP:
    if preset not in registry:
        raise ValueError(f"Unknown {kind} preset {preset!r}; valid presets: {sorted(registry)}")
    spec = registry[preset]
    return MLP(
        in_dim,
        spec.hidden_dim if hidden_dim is None else hidden_dim,
        spec.out_dim if out_dim is None else out_dim,
        spec.num_layers,
        hidden_bn=spec.hidden_bn,
        last_bn=spec.last_bn,
        last_bn_affine=spec.last_bn_affine,
        hidden_bias=spec.hidden_bias,
        last_bias=spec.last_bias,
    )


def build_projector(
    preset: str, in_dim: int, hidden_dim: int | None = None, out_dim: int | None = None
) -> MLP:
    """The projector of ``preset`` (a key of ``PROJECTORS``), optionally resized.

    Args:
        preset: ``simclr``, ``moco_v2``, ``moco_v3``, ``byol``, ``nnclr``, ``barlow``,
            ``vicreg`` or ``all4one``.
        in_dim: backbone ``num_features``.
        hidden_dim: hidden width; ``None`` keeps the paper's.
        out_dim: output width; ``None`` keeps the paper's.

    Shape:
        (B, in_dim) -> (B, out_dim)

    Raises:
        ValueError: unknown preset (the message lists the valid ones) or a non-positive dim.

    Example:
        >>> import torch
        >>> build_projector("byol", 512)(torch.randn(4, 512)).shape
        torch.Size([4, 256])
    """
    return _build(PROJECTORS, "projector", preset, in_dim, hidden_dim, out_dim)


def build_predictor(
    preset: str, in_dim: int, hidden_dim: int | None = None, out_dim: int | None = None
) -> MLP:
    """The predictor of ``preset`` (a key of ``PREDICTORS``), optionally resized.

    Only methods with a predictor have a preset (``moco_v3``, ``byol``, ``nnclr``,
    ``all4one``); ``in_dim`` is normally the projector's ``out_dim``.

    Shape:
        (B, in_dim) -> (B, out_dim)

    Raises:
        ValueError: unknown preset (the message lists the valid ones) or a non-positive dim.

    Example:
        >>> import torch
        >>> build_predictor("byol", 256)(torch.randn(4, 256)).shape
        torch.Size([4, 256])
    """
    return _build(PREDICTORS, "predictor", preset, in_dim, hidden_dim, out_dim)
