"""Backbone registry: ``build_backbone(name, **kwargs)`` and ``export_state_dict``.

Every backbone has ``num_features: int`` and maps ``(B, 3, H, W)`` images to pooled
``(B, num_features)`` features (docs/CONTRACTS.md). Our own ResNets and ViTs need neither
torchvision nor timm; ``timm:<name>`` is an optional escape hatch (``pip install hexssl[timm]``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from hexssl.backbones.resnet import ResNet, resnet18, resnet50
from hexssl.backbones.vit import TIMM_NAMES, VisionTransformer, vit_small, vit_tiny

__all__ = [
    "BACKBONES",
    "EXPORT_FORMATS",
    "TIMM_NAMES",
    "TIMM_PREFIX",
    "ResNet",
    "VisionTransformer",
    "build_backbone",
    "export_state_dict",
]

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
}
TIMM_PREFIX = "timm:"
TIMM_HINT = "pip install hexssl[timm]"


def _check_kwargs(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """Unknown kwargs fail here with a ValueError instead of a TypeError deep inside."""
    accepted = sorted(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown kwargs {unknown} for backbone {name!r}; accepted: {accepted}")


def _import_timm() -> ModuleType:
    """Import timm lazily so hexssl never needs it unless a ``timm:`` backbone is asked for."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(f"'{TIMM_PREFIX}<name>' backbones need timm: {TIMM_HINT}") from err
    return timm


def _build_timm(model_name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(model_name, num_classes=0)``: a headless, randomly initialised net."""
    if not model_name:
        raise ValueError(f"Empty timm model name; use '{TIMM_PREFIX}<name>', e.g. 'timm:resnet18'")
    model: nn.Module = _import_timm().create_model(
        model_name, num_classes=0, pretrained=False, **kwargs
    )
    return model


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a backbone by registry name (or ``timm:<name>``).

    Args:
        name: one of ``BACKBONES`` (``resnet18``, ``resnet50``, ``vit_tiny``, ``vit_small``)
            or ``timm:<timm model name>``.
        **kwargs: forwarded to the factory. ResNets take ``stem`` (``"cifar"`` or
            ``"imagenet"``, default ``"imagenet"``), ``width`` (default 64) and
            ``zero_init_residual``; ViTs take ``img_size`` and ``patch_size``. ``timm:``
            names forward them to ``timm.create_model``.

    Returns:
        A module with ``num_features`` whose forward maps ``(B, 3, H, W)`` to
        ``(B, num_features)``.

    Raises:
        ValueError: unknown name, unknown kwarg or invalid value (named in the message).
        ImportError: a ``timm:`` name without timm installed.

    Example:
        >>> net = build_backbone("resnet18", stem="cifar", width=16)
        >>> net.num_features
        128
    """
    if name.startswith(TIMM_PREFIX):
        return _build_timm(name[len(TIMM_PREFIX) :], kwargs)
    if name not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}; valid names: {sorted(BACKBONES)} or '{TIMM_PREFIX}<name>'"
        )
    _check_kwargs(name, BACKBONES[name], kwargs)
    return BACKBONES[name](**kwargs)


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip ``torch.compile`` and DistributedDataParallel wrappers (they prefix keys)."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def _plain_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Detached CPU copies of every parameter and buffer, under the model's own names."""
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}


def _torchvision_state_dict(model: nn.Module) -> dict[str, Tensor]:
    model = _unwrap(model)
    if not isinstance(model, ResNet):
        raise ValueError(f"fmt='torchvision' needs a hexssl ResNet, got {type(model).__name__}")
    if model.width != 64:
        raise ValueError(f"torchvision ResNets have width 64; this one has width={model.width}")
    return _plain_state_dict(model)


def _timm_state_dict(model: nn.Module) -> dict[str, Tensor]:
    model = _unwrap(model)
    from_timm = type(model).__module__.split(".")[0] == "timm"
    if not (from_timm or isinstance(model, VisionTransformer)):
        raise ValueError(
            f"fmt='timm' needs a hexssl VisionTransformer or a timm model, "
            f"got {type(model).__name__}"
        )
    return _plain_state_dict(model)


EXPORT_FORMATS: dict[str, Callable[[nn.Module], dict[str, Tensor]]] = {
    "torchvision": _torchvision_state_dict,
    "timm": _timm_state_dict,
    "state_dict": _plain_state_dict,
}


def export_state_dict(backbone: nn.Module, fmt: str) -> dict[str, Tensor]:
    """A plain ``{name: CPU tensor}`` dict that loads into torchvision / timm models.

    Our parameter names already match the reference libraries, so no key is renamed;
    the format only checks that the target can hold these weights. ``torch.compile`` and
    DDP wrappers are stripped.

    Args:
        backbone: a model from ``build_backbone``.
        fmt: ``"torchvision"`` (hexssl ResNet with ``width=64``), ``"timm"`` (hexssl ViT or
            a ``timm:`` model) or ``"state_dict"`` (any module, keys as they are).

    Returns:
        Detached CPU tensors keyed like ``backbone.state_dict()``.

    Raises:
        ValueError: unknown ``fmt``, or a backbone the target library cannot hold.

    Loading on a GPU machine (where torchvision / timm are installed)::

        # here: torch.save(export_state_dict(net, "torchvision"), "r18.pt")
        import torch, torchvision
        model = torchvision.models.resnet18()  # or resnet50(), matching the backbone
        # CIFAR stem only (build_backbone(..., stem="cifar")): swap in the 3x3 stem first,
        # as solo-learn does, or conv1.weight will not fit.
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
        sd = torch.load("r18.pt", map_location="cuda", weights_only=True)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
        model.fc = torch.nn.Identity()  # or a fresh linear probe
        model.cuda()

        # here: torch.save(export_state_dict(vit, "timm"), "vit.pt")
        import timm
        # hexssl.backbones.vit.TIMM_NAMES["vit_small"] == "vit_small_patch16_224";
        # vit.timm_kwargs() == {"num_classes": 0, "img_size": 32, "patch_size": 4, ...}
        model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0,
                                  img_size=32, patch_size=4)
        model.load_state_dict(torch.load("vit.pt", map_location="cuda", weights_only=True))
        model.cuda()  # forward(x) == hexssl vit(x): the normalised class token
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; valid formats: {sorted(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[fmt](backbone)
