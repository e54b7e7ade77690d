"""SSL methods: one small file each, composed from backbone, heads and loss."""

from __future__ import annotations

from hexssl.config import METHOD_NAMES
from hexssl.methods.all4one import All4One
from hexssl.methods.barlow import BarlowTwins
from hexssl.methods.base import SSLMethod, StepOutput, WeightedTerm
from hexssl.methods.byol import BYOL
from hexssl.methods.moco_v2 import MoCoV2
from hexssl.methods.moco_v3 import MoCoV3
from hexssl.methods.nnclr import NNCLR
from hexssl.methods.simclr import SimCLR
from hexssl.methods.vicreg import VICReg

METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "moco_v3": MoCoV3,
    "nnclr": NNCLR,
    "all4one": All4One,
    "byol": BYOL,
    "barlow": BarlowTwins,
    "vicreg": VICReg,
}
if tuple(METHODS) != METHOD_NAMES:  # one list of names for the config and the registry
    raise ImportError(f"hexssl.config.METHOD_NAMES {METHOD_NAMES} != methods {tuple(METHODS)}")


def get_method(name: str) -> type[SSLMethod]:
    """Method class by registry name; unknown names list the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "SSLMethod", "StepOutput", "WeightedTerm", "get_method"]
