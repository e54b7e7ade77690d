"""SSL methods: one small file each, composed from backbone, heads and loss."""

from __future__ import annotations

from hexssl.methods.base import SSLMethod, StepOutput, WeightedTerm
from hexssl.methods.simclr import SimCLR

METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
}


def get_method(name: str) -> type[SSLMethod]:
    """Method class by registry name; unknown names list the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "SSLMethod", "StepOutput", "WeightedTerm", "get_method"]
