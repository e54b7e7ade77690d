"""ResNet-18 / ResNet-50 feature extractors with CIFAR or ImageNet stems.

He et al., "Deep Residual Learning for Image Recognition" (arXiv:1512.03385), in the
torchvision "v1.5" form (stride on the 3x3 conv of the bottleneck). Module, parameter and
buffer names and shapes match ``torchvision.models.resnet18`` / ``resnet50`` exactly, minus
``fc``: the classifier is not part of the backbone (projectors live in ``hexssl.heads``).

Two departures from torchvision, both opt-in:

* ``width`` is the base width (torchvision's is 64). Every conv scales with it, so
  ``num_features = 512 * width / 64`` (R18) or ``2048 * width / 64`` (R50). Only
  ``width=64`` loads into a torchvision model.
* ``stem="cifar"`` uses a 3x3 stride-1 ``conv1`` and no max-pool (SimCLR arXiv:2002.05709
  app. B.9; solo-learn does the same). ``conv1.weight`` is then ``(width, 3, 3, 3)``
  instead of ``(64, 3, 7, 7)``, so a torchvision model needs
  ``conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)`` and ``maxpool = nn.Identity()``
  before it can load our weights (see ``hexssl.backbones.export_state_dict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

STAGE_STRIDES = (1, 2, 2, 2)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projected) shortcut, as in ResNet-18/34.

    Shape:
        (B, inplanes, H, W) -> (B, planes, H / stride, W / stride)
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, as in ResNet-50 (torchvision v1.5).

    Shape:
        (B, inplanes, H, W) -> (B, 4 * planes, H / stride, W / stride)
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def _cifar_stem(width: int) -> tuple[nn.Conv2d, nn.Module]:
    # 32 px inputs: keep full resolution into layer1 (arXiv:2002.05709 app. B.9).
    return nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.Identity()


def _imagenet_stem(width: int) -> tuple[nn.Conv2d, nn.Module]:
    # arXiv:1512.03385 table 1: 7x7/2 conv then 3x3/2 max-pool (4x downsampling).
    return nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)


STEMS: dict[str, Callable[[int], tuple[nn.Conv2d, nn.Module]]] = {
    "cifar": _cifar_stem,
    "imagenet": _imagenet_stem,
}


def _check_args(stem: str, width: int) -> None:
    if stem not in STEMS:
        raise ValueError(f"Unknown stem {stem!r}; valid stems: {sorted(STEMS)}")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive int (64 = torchvision), got {width!r}")


def _make_stage(
    block: Block, inplanes: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """One ``layerN``: a first (possibly strided, projected) block then ``blocks - 1`` more."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ResNet trunk returning globally average-pooled features (no ``fc``).

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50+).
        layers: number of blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        stem: ``"cifar"`` (3x3/1 conv, no max-pool) or ``"imagenet"`` (7x7/2 + max-pool).
        width: base width; torchvision uses 64.
        zero_init_residual: zero the gamma of each block's last BN so every residual
            branch starts as the identity (Goyal et al., arXiv:1706.02677 sec. 5.1).

    Shape:
        (B, 3, H, W) -> (B, num_features)

    Example:
        >>> net = ResNet(BasicBlock, (2, 2, 2, 2), stem="cifar", width=16)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        stem: str = "imagenet",
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_args(stem, width)
        self.stem, self.width = stem, width
        self.conv1, self.maxpool = STEMS[stem](width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        if len(layers) != len(STAGE_STRIDES):
            raise ValueError(f"layers must give {len(STAGE_STRIDES)} stage depths, got {layers!r}")
        stages, inplanes = [], width
        for i, (blocks, stride) in enumerate(zip(layers, STAGE_STRIDES)):
            stages.append(_make_stage(block, inplanes, width * 2**i, blocks, stride))
            inplanes = width * 2**i * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features: int = inplanes
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's init: Kaiming-normal (fan_out) convs, BN gamma 1 and beta 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, width, H', W')
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, F, H'/8, W'/8)
        return torch.flatten(self.avgpool(x), 1)  # (B, F)


def resnet18(
    *, stem: str = "imagenet", width: int = 64, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18 trunk; ``num_features = 8 * width`` (512 at the default width).

    Shape:
        (B, 3, H, W) -> (B, 8 * width)
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), stem, width, zero_init_residual)


def resnet50(
    *, stem: str = "imagenet", width: int = 64, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50 trunk; ``num_features = 32 * width`` (2048 at the default width).

    Shape:
        (B, 3, H, W) -> (B, 32 * width)
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), stem, width, zero_init_residual)
