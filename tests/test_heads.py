"""Projector / predictor presets: paper architectures, overrides, errors, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hexssl.heads import MLP, PREDICTORS, PROJECTORS, build_predictor, build_projector


def _signature(mlp: nn.Module) -> list[str]:
    """Compact layer list, e.g. ``["L512-2048", "BN", "ReLU", "L2048-128"]``.

    ``L..nb`` marks a Linear without bias and ``BN-`` a BatchNorm without affine.
    """
    out = []
    for m in mlp.children():
        if isinstance(m, nn.Linear):
            out.append(f"L{m.in_features}-{m.out_features}" + ("" if m.bias is not None else "nb"))
        elif isinstance(m, nn.BatchNorm1d):
            out.append("BN" if m.affine else "BN-")
        else:
            out.append(type(m).__name__)
    return out


# Written from each paper / official code, for a 2048-d (ResNet-50) backbone.
EXPECTED_PROJECTORS = {
    "simclr": ["L2048-2048", "BN", "ReLU", "L2048-128"],
    "moco_v2": ["L2048-2048", "ReLU", "L2048-128"],
    "moco_v3": ["L2048-4096nb", "BN", "ReLU", "L4096-4096nb", "BN", "ReLU", "L4096-256nb", "BN-"],
    "byol": ["L2048-4096", "BN", "ReLU", "L4096-256"],
    "nnclr": ["L2048-2048", "BN", "ReLU", "L2048-2048", "BN", "ReLU", "L2048-256", "BN"],
    "barlow": ["L2048-8192nb", "BN", "ReLU", "L8192-8192nb", "BN", "ReLU", "L8192-8192nb"],
    "vicreg": ["L2048-8192", "BN", "ReLU", "L8192-8192", "BN", "ReLU", "L8192-8192nb"],
    "all4one": ["L2048-2048", "BN", "ReLU", "L2048-2048", "BN", "ReLU", "L2048-256", "BN"],
}
EXPECTED_PREDICTORS = {
    "moco_v3": ["L256-4096nb", "BN", "ReLU", "L4096-256nb"],
    "byol": ["L256-4096", "BN", "ReLU", "L4096-256"],
    "nnclr": ["L256-4096", "BN", "ReLU", "L4096-256"],
    "all4one": ["L256-4096", "BN", "ReLU", "L4096-256"],
}


def test_registries_cover_expected_presets() -> None:
    assert set(PROJECTORS) == set(EXPECTED_PROJECTORS)
    assert set(PREDICTORS) == set(EXPECTED_PREDICTORS)


@pytest.mark.parametrize("preset", sorted(EXPECTED_PROJECTORS))
def test_projector_preset_architecture(preset: str) -> None:
    with torch.device("meta"):  # full paper widths without allocating 8192 x 8192 weights
        head = build_projector(preset, 2048)
    assert _signature(head) == EXPECTED_PROJECTORS[preset]


@pytest.mark.parametrize("preset", sorted(EXPECTED_PREDICTORS))
def test_predictor_preset_architecture(preset: str) -> None:
    with torch.device("meta"):
        head = build_predictor(preset, 256)
    assert _signature(head) == EXPECTED_PREDICTORS[preset]


def test_overrides_change_only_widths() -> None:
    head = build_projector("moco_v3", 64, hidden_dim=32, out_dim=16)
    assert _signature(head) == [
        "L64-32nb",
        "BN",
        "ReLU",
        "L32-32nb",
        "BN",
        "ReLU",
        "L32-16nb",
        "BN-",
    ]


@pytest.mark.parametrize("preset", sorted(PROJECTORS))
def test_projector_output_dim_and_gradients(preset: str) -> None:
    head = build_projector(preset, 24, hidden_dim=32, out_dim=16)
    x = torch.randn(4, 24, requires_grad=True)
    out = head(x)  # (4, 16)
    assert out.shape == (4, 16)
    (out * torch.randn_like(out)).sum().backward()  # not .sum(): a last BN makes that 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


@pytest.mark.parametrize("preset", sorted(PREDICTORS))
def test_predictor_output_dim_and_gradients(preset: str) -> None:
    head = build_predictor(preset, 16, hidden_dim=32)
    x = torch.randn(4, 16, requires_grad=True)
    out = head(x)
    assert out.shape == (4, PREDICTORS[preset].out_dim)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_unknown_presets_list_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'simclr_v2'.*barlow.*vicreg"):
        build_projector("simclr_v2", 512)
    with pytest.raises(ValueError, match=r"'simclr'.*all4one.*byol.*moco_v3.*nnclr"):
        build_predictor("simclr", 128)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"in_dim": 0}, "in_dim"), ({"hidden_dim": -1}, "hidden_dim"), ({"out_dim": 1.5}, "out_dim")],
)
def test_bad_dims_raise(kwargs: dict[str, float], named: str) -> None:
    args = {"in_dim": 8, "hidden_dim": None, "out_dim": None} | kwargs
    with pytest.raises(ValueError, match=named):
        build_projector("simclr", **args)  # type: ignore[arg-type]


def test_mlp_single_layer_is_linear() -> None:
    assert _signature(MLP(8, 99, 4, num_layers=1)) == ["L8-4"]
    with pytest.raises(ValueError, match="num_layers"):
        MLP(8, 16, 4, num_layers=0)
