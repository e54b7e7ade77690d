"""build_backbone / export_state_dict: registry errors, timm hook, export round trips."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
from torch import nn

from hexssl.backbones import BACKBONES, VisionTransformer, build_backbone, export_state_dict


def _tiny_vit() -> VisionTransformer:
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=24, depth=1, num_heads=3)


def test_registry_names() -> None:
    assert set(BACKBONES) == {"resnet18", "resnet50", "vit_tiny", "vit_small"}


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'resnet34'") as err:
        build_backbone("resnet34")
    for name in BACKBONES:
        assert name in str(err.value)
    assert "timm:<name>" in str(err.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "named"),
    [
        ("resnet18", {"depth": 3}, "depth"),
        ("resnet18", {"img_size": 32}, "img_size"),
        ("vit_tiny", {"width": 8}, "width"),
        ("resnet18", {"width": 0}, "width"),
        ("resnet50", {"width": -16}, "-16"),
        ("resnet18", {"width": 2.5}, "2.5"),
        ("resnet18", {"stem": "tiny"}, "'tiny'.*cifar.*imagenet"),
        ("vit_tiny", {"img_size": 30, "patch_size": 4}, "img_size=30.*patch_size=4"),
        ("vit_small", {"patch_size": 0}, "patch_size"),
    ],
)
def test_bad_kwargs_raise_value_error_naming_them(
    name: str, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        build_backbone(name, **kwargs)


def test_timm_name_without_timm_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ImportError, match=r"pip install hexssl\[timm\]"):
        build_backbone("timm:resnet18")


def test_timm_name_builds_headless_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def create_model(name: str, **kwargs: Any) -> nn.Module:
        calls.append((name, kwargs))
        return nn.Identity()

    fake = types.ModuleType("timm")
    fake.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake)
    build_backbone("timm:vit_small_patch16_224", img_size=32)
    assert calls == [
        ("vit_small_patch16_224", {"num_classes": 0, "pretrained": False, "img_size": 32})
    ]
    with pytest.raises(ValueError, match="timm model name"):
        build_backbone("timm:")


def test_import_does_not_need_timm() -> None:
    import hexssl.backbones as mod

    assert "timm" not in vars(mod)


@pytest.mark.parametrize(
    ("name", "kwargs", "fmt"),
    [
        ("resnet18", {"stem": "imagenet"}, "torchvision"),
        ("resnet18", {"stem": "cifar"}, "torchvision"),
        ("vit_tiny", {"img_size": 32, "patch_size": 8}, "timm"),
        ("resnet50", {"stem": "cifar", "width": 8}, "state_dict"),
    ],
)
def test_export_round_trips(name: str, kwargs: dict[str, Any], fmt: str) -> None:
    source = build_backbone(name, **kwargs)
    exported = export_state_dict(source, fmt)
    assert exported.keys() == source.state_dict().keys()
    assert all(t.device.type == "cpu" and not t.requires_grad for t in exported.values())
    target = build_backbone(name, **kwargs)
    target.load_state_dict(exported, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target.eval()(x), source.eval()(x))


def test_export_is_a_copy() -> None:
    model = build_backbone("resnet18", stem="cifar", width=8)
    exported = export_state_dict(model, "state_dict")
    exported["conv1.weight"].zero_()
    assert model.conv1.weight.abs().sum() > 0


def test_export_strips_compile_wrapper_prefix() -> None:
    class Wrapped(nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

    inner = build_backbone("resnet18", stem="cifar", width=8)
    assert export_state_dict(Wrapped(inner), "state_dict").keys() == inner.state_dict().keys()


@pytest.mark.parametrize(
    ("name", "kwargs", "fmt", "match"),
    [
        ("resnet18", {"width": 16}, "torchvision", "width=16"),
        ("vit", {}, "torchvision", "VisionTransformer"),
        ("resnet18", {"width": 8}, "timm", "ResNet"),
        ("resnet18", {"width": 8}, "onnx", "'onnx'.*state_dict.*timm.*torchvision"),
    ],
)
def test_export_rejects_what_the_target_cannot_hold(
    name: str, kwargs: dict[str, Any], fmt: str, match: str
) -> None:
    model = _tiny_vit() if name == "vit" else build_backbone(name, **kwargs)
    with pytest.raises(ValueError, match=match):
        export_state_dict(model, fmt)
