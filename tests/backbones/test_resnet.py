"""ResNet backbones: output shapes, torchvision naming/shapes, init options, gradients.

The expected state_dict layouts below are written out from torchvision's published
architecture (no torchvision import): ResNet-18 key by key, ResNet-50 by a small
independent generator plus torchvision's published parameter counts.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hexssl.backbones import build_backbone
from hexssl.backbones.resnet import BasicBlock, Bottleneck

Shape = tuple[int, ...]


def _bn(name: str, c: int) -> list[tuple[str, Shape]]:
    """The five state_dict entries of a torchvision BatchNorm2d with ``c`` channels."""
    stats = ("weight", "bias", "running_mean", "running_var")
    return [(f"{name}.{s}", (c,)) for s in stats] + [(f"{name}.num_batches_tracked", ())]


def _conv_bn(conv: str, bn: str, shape: Shape) -> list[tuple[str, Shape]]:
    return [(f"{conv}.weight", shape), *_bn(bn, shape[0])]


# torchvision.models.resnet18().state_dict() without fc, in order, with shapes.
RESNET18_TORCHVISION: list[tuple[str, Shape]] = [
    *_conv_bn("conv1", "bn1", (64, 3, 7, 7)),
    *_conv_bn("layer1.0.conv1", "layer1.0.bn1", (64, 64, 3, 3)),
    *_conv_bn("layer1.0.conv2", "layer1.0.bn2", (64, 64, 3, 3)),
    *_conv_bn("layer1.1.conv1", "layer1.1.bn1", (64, 64, 3, 3)),
    *_conv_bn("layer1.1.conv2", "layer1.1.bn2", (64, 64, 3, 3)),
    *_conv_bn("layer2.0.conv1", "layer2.0.bn1", (128, 64, 3, 3)),
    *_conv_bn("layer2.0.conv2", "layer2.0.bn2", (128, 128, 3, 3)),
    *_conv_bn("layer2.0.downsample.0", "layer2.0.downsample.1", (128, 64, 1, 1)),
    *_conv_bn("layer2.1.conv1", "layer2.1.bn1", (128, 128, 3, 3)),
    *_conv_bn("layer2.1.conv2", "layer2.1.bn2", (128, 128, 3, 3)),
    *_conv_bn("layer3.0.conv1", "layer3.0.bn1", (256, 128, 3, 3)),
    *_conv_bn("layer3.0.conv2", "layer3.0.bn2", (256, 256, 3, 3)),
    *_conv_bn("layer3.0.downsample.0", "layer3.0.downsample.1", (256, 128, 1, 1)),
    *_conv_bn("layer3.1.conv1", "layer3.1.bn1", (256, 256, 3, 3)),
    *_conv_bn("layer3.1.conv2", "layer3.1.bn2", (256, 256, 3, 3)),
    *_conv_bn("layer4.0.conv1", "layer4.0.bn1", (512, 256, 3, 3)),
    *_conv_bn("layer4.0.conv2", "layer4.0.bn2", (512, 512, 3, 3)),
    *_conv_bn("layer4.0.downsample.0", "layer4.0.downsample.1", (512, 256, 1, 1)),
    *_conv_bn("layer4.1.conv1", "layer4.1.bn1", (512, 512, 3, 3)),
    *_conv_bn("layer4.1.conv2", "layer4.1.bn2", (512, 512, 3, 3)),
]


def _resnet50_torchvision() -> list[tuple[str, Shape]]:
    """torchvision resnet50 (v1.5) state_dict without fc: stride on conv2, 4x expansion."""
    out = _conv_bn("conv1", "bn1", (64, 3, 7, 7))
    c_in = 64
    for stage, depth in enumerate((3, 4, 6, 3), start=1):
        mid = 64 * 2 ** (stage - 1)
        for i in range(depth):
            p = f"layer{stage}.{i}"
            out += _conv_bn(f"{p}.conv1", f"{p}.bn1", (mid, c_in, 1, 1))
            out += _conv_bn(f"{p}.conv2", f"{p}.bn2", (mid, mid, 3, 3))
            out += _conv_bn(f"{p}.conv3", f"{p}.bn3", (4 * mid, mid, 1, 1))
            if i == 0:
                out += _conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", (4 * mid, c_in, 1, 1))
            c_in = 4 * mid
    return out


def _layout(model: nn.Module) -> list[tuple[str, Shape]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _on_meta(name: str, **kwargs: object) -> nn.Module:
    """Build at full width without allocating or initialising weights."""
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


def test_resnet18_matches_torchvision_layout() -> None:
    assert len(RESNET18_TORCHVISION) == 120  # torchvision's 122 keys minus fc.weight/bias
    assert _layout(_on_meta("resnet18", stem="imagenet")) == RESNET18_TORCHVISION


def test_resnet50_matches_torchvision_layout() -> None:
    expected = _resnet50_torchvision()
    assert len(expected) == 318  # torchvision's 320 keys minus fc
    assert _layout(_on_meta("resnet50", stem="imagenet")) == expected


@pytest.mark.parametrize(
    ("name", "tv_params", "fc_params"),
    [("resnet18", 11_689_512, 512 * 1000 + 1000), ("resnet50", 25_557_032, 2048 * 1000 + 1000)],
)
def test_parameter_count_is_torchvision_minus_fc(name: str, tv_params: int, fc_params: int) -> None:
    model = _on_meta(name)
    assert sum(p.numel() for p in model.parameters()) == tv_params - fc_params


def test_cifar_stem_only_changes_conv1() -> None:
    cifar = dict(_layout(_on_meta("resnet18", stem="cifar")))
    imagenet = dict(_layout(_on_meta("resnet18", stem="imagenet")))
    assert cifar.keys() == imagenet.keys()
    assert cifar.pop("conv1.weight") == (64, 3, 3, 3)
    assert imagenet.pop("conv1.weight") == (64, 3, 7, 7)
    assert cifar == imagenet


@pytest.mark.parametrize(
    ("name", "stem", "size", "features"),
    [
        ("resnet18", "cifar", 32, 64),
        ("resnet50", "cifar", 32, 256),
        ("resnet18", "imagenet", 64, 64),
        ("resnet50", "imagenet", 64, 256),
        ("resnet18", "imagenet", 224, 64),
        ("resnet50", "imagenet", 224, 256),
    ],
)
def test_output_shape(name: str, stem: str, size: int, features: int) -> None:
    model = build_backbone(name, stem=stem, width=8)
    assert model.num_features == features  # 512 (R18) / 2048 (R50) * 8 / 64
    assert model(torch.randn(2, 3, size, size)).shape == (2, features)


def test_width_scales_every_stage() -> None:
    widths = {
        k: v[0]
        for k, v in _layout(build_backbone("resnet18", width=16))
        if k.endswith("conv2.weight")
    }
    assert widths["layer1.0.conv2.weight"] == 16
    assert widths["layer4.1.conv2.weight"] == 128


@pytest.mark.parametrize(("name", "block"), [("resnet18", BasicBlock), ("resnet50", Bottleneck)])
def test_zero_init_residual(name: str, block: type[nn.Module]) -> None:
    model = build_backbone(name, stem="cifar", width=8, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, block)]
    assert blocks and all(torch.all(b.last_bn.weight == 0) for b in blocks)  # type: ignore[union-attr]
    default = build_backbone(name, stem="cifar", width=8)
    assert all(torch.all(m.bn1.weight == 1) for m in default.modules() if isinstance(m, block))


def test_gradients_reach_every_parameter() -> None:
    model = build_backbone("resnet18", stem="cifar", width=8)
    model(torch.randn(4, 3, 32, 32)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
