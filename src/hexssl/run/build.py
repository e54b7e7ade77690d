"""From a validated ``RunConfig`` to the objects of a run: data, loss, method.

This is the one place where config names are resolved, so an unknown name fails at
load time, before any data is read or any checkpoint written.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch
from torch import nn

from hexssl.backbones import build_backbone
from hexssl.config import ConfigError, HexConfig, LossConfig, RunConfig, check_params
from hexssl.data.datamodule import HexDataModule
from hexssl.data.datasets import DATASETS
from hexssl.data.transforms import build_augmentation, build_views
from hexssl.losses import HEXDenominator, InfoNCE, InfoNCEDenominator
from hexssl.losses.relatives import RELATIVES
from hexssl.methods import METHODS, SSLMethod, WeightedTerm, get_method
from hexssl.optim import OPTIMIZERS
from hexssl.run.speed import runs_on_cpu

LAZY_CROPPED = ("imagenet", "imagenet100")  # decode-time crops, one per view

THRESHOLD_KEYS = {
    "adaptive": ("q", "per_anchor", "ema"),
    "fixed": ("eps0", "schedule", "step_down", "epoch_step", "eps_min"),
    "superclass_oracle": (),
}


def build_denominator(h: HexConfig, max_epochs: int) -> nn.Module:
    """InfoNCE's plain denominator, or HEX with the configured threshold.

    The HEX values are validated even when ``hex.enabled`` is false, so that a bad
    ``hex.*`` value never waits silently for the day HEX is switched on.
    """
    hex_den = hex_denominator(h, max_epochs)
    return hex_den if h.enabled else InfoNCEDenominator()


def hex_denominator(h: HexConfig, max_epochs: int) -> HEXDenominator:
    """HEX with the configured threshold; a bad value raises ConfigError naming it."""
    if h.threshold not in THRESHOLD_KEYS:
        raise ConfigError(
            f"hex.threshold={h.threshold!r} is unknown; valid: {sorted(THRESHOLD_KEYS)}"
        )
    kwargs: dict[str, Any] = {k: getattr(h, k) for k in THRESHOLD_KEYS[h.threshold]}
    if h.threshold == "fixed":
        kwargs["max_epochs"] = max_epochs
    try:
        return HEXDenominator(
            h.threshold,
            variant=h.variant,
            beta=h.beta,
            tau_plus=h.tau_plus,
            lambda_local=h.lambda_local,
            warmup_epochs=h.warmup_epochs,
            detach_weights=h.detach_weights,
            fused=h.fused,
            **kwargs,
        )
    except ValueError as err:
        raise ConfigError(f"hex: {err}") from None


# loss.denominator -> the loss.* keys it reads (the others must stay null)
LOSS_KEYS: dict[str, tuple[str, ...]] = {
    "infonce": (),
    "decoupled": ("sigma", "detach_weights"),
    "debiased": ("tau_plus",),
    "hard": ("beta", "tau_plus", "detach_weights"),
}
OPTIONAL_LOSS_KEYS = ("beta", "tau_plus", "sigma", "detach_weights")
# the papers' (and lightly's) names for them, answered in the error for an unknown name
PAPER_NAMES = {
    "dcl": "loss.denominator=decoupled",
    "dclw": "loss.denominator=decoupled loss.sigma=0.5",
    "hcl": "loss.denominator=hard",
    "hex": "hex.enabled=true",
}


def relative_denominator(loss: LossConfig) -> nn.Module | None:
    """The configured relative of HEX (``loss.*``), or None for plain InfoNCE.

    An unknown name, a value out of range or a key the denominator does not read
    raises ConfigError naming it.
    """
    name = loss.denominator
    if name not in LOSS_KEYS:
        known = PAPER_NAMES.get(str(name).lower())
        hint = f" (for {str(name).upper()}: {known})" if known else ""
        raise ConfigError(
            f"loss.denominator={name!r} is unknown{hint}; valid: {', '.join(LOSS_KEYS)} "
            "(HEX itself: hex.enabled=true)"
        )
    reads = LOSS_KEYS[name]
    for key in OPTIONAL_LOSS_KEYS:
        if getattr(loss, key) is not None and key not in reads:
            users = [n for n, keys in LOSS_KEYS.items() if key in keys]
            raise ConfigError(
                f"loss.{key}={getattr(loss, key)!r} is not read by loss.denominator={name}; "
                f"remove it (it is read by: {', '.join(users)})"
            )
    if name == "infonce":
        return None
    kwargs = {k: getattr(loss, k) for k in reads if getattr(loss, k) is not None}
    try:
        return RELATIVES[name](**kwargs)
    except ValueError as err:
        raise ConfigError(f"loss.{err}") from None


def run_denominator(cfg: RunConfig, contrastive: bool) -> nn.Module:
    """The InfoNCE denominator of a run: HEX, a relative of HEX (``loss.*``) or plain.

    Refuses the combinations that make no sense: HEX and a relative at once, and a
    relative on a method without an InfoNCE denominator.
    """
    relative = relative_denominator(cfg.loss)
    hex_den = build_denominator(cfg.hex, cfg.trainer.max_epochs)
    if relative is None:
        return hex_den
    name = cfg.loss.denominator
    if cfg.hex.enabled:
        raise ConfigError(
            f"hex.enabled=true and loss.denominator={name} both replace the InfoNCE "
            "denominator; set hex.enabled=false or loss.denominator=infonce"
        )
    if not contrastive:
        valid = ", ".join(n for n, c in METHODS.items() if c.contrastive)
        raise ConfigError(
            f"loss.denominator={name} needs a contrastive method ({valid}); "
            f"{cfg.method.name} has no InfoNCE denominator"
        )
    return relative


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose (e.g. "backbone"), a pure function of (seed, purpose).

    Drawing the backbone's initial weights from its own stream makes them independent of
    what else is built (heads, HEX, data): every arm of a paired study that shares a seed
    starts from the same backbone.
    """
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


def check_names(cfg: RunConfig) -> None:
    """Resolve every registry name and method/HEX value of ``cfg``; reads no data.

    Called when a config is loaded for training or printing, so that a typo fails before
    anything is written (STYLE rule 3).
    """
    cls, _ = method_class(cfg)
    run_denominator(cfg, cls.contrastive)
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(
            f"config key 'data.dataset' = {cfg.data.dataset!r}: unknown; valid: "
            f"{', '.join(sorted(DATASETS))}"
        )
    if cfg.optim.name not in OPTIMIZERS:
        raise ConfigError(
            f"config key 'optim.name' = {cfg.optim.name!r}: unknown; valid: "
            f"{', '.join(sorted(OPTIMIZERS))}"
        )
    hex_denominator(cfg.hex, cfg.trainer.max_epochs)
    for threshold in THRESHOLD_KEYS:  # every hex.* value, whichever threshold is picked
        hex_denominator(dataclasses.replace(cfg.hex, threshold=threshold), cfg.trainer.max_epochs)


def method_class(cfg: RunConfig) -> tuple[type[SSLMethod], Any]:
    """The method class and its validated params."""
    try:
        cls = get_method(cfg.method.name)
    except ValueError as err:
        raise ConfigError(f"method.name: {err}") from None
    return cls, check_params(cfg.method.params, cls.Params(), "method.params.")


# Image folders, decoded at data.image_size unless data.options.image_size says otherwise.
DECODED_AT_SIZE = ("imagefolder", "unlabeled", "tiny-imagenet-hier50")


def build_datamodule(
    cfg: RunConfig, rank: int | None = None, world: int | None = None
) -> HexDataModule:
    """The data module of a run (uint8 batches; augmentation runs in the method)."""
    d = cfg.data
    options = dict(d.options)
    if "image_size" not in options and d.dataset in DECODED_AT_SIZE:
        options["image_size"] = d.image_size
    if d.dataset in LAZY_CROPPED and "crops" not in options:
        options["crops"] = decode_crops(cfg)
    max_samples = options.pop("max_train_samples", None)
    return HexDataModule(
        d.dataset,
        d.root,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        dataset_kwargs=options,
        max_train_samples=max_samples,
        seed=cfg.seed,
        rank=rank,
        world_size=world,
        on_device=d.on_device,
        pin_memory=d.pin_memory
        if d.pin_memory is not None
        else not runs_on_cpu(cfg.trainer.accelerator),
    )


def augment_preset(cfg: RunConfig) -> str:
    """``data.augment``, or the method's default augmentation preset."""
    try:
        cls = get_method(cfg.method.name)
    except ValueError as err:
        raise ConfigError(f"method.name: {err}") from None
    return cfg.data.augment or cls.default_augment


def decode_crops(cfg: RunConfig) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """(scale, ratio) of every view: lazy ImageNet takes these crops when it decodes."""
    try:
        views = build_views(augment_preset(cfg), cfg.data.image_size, **cfg.data.aug_overrides)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"data.augment / data.aug_overrides: {err}") from None
    return [(v.crop_scale, v.crop_ratio) for v in views]


def global_batch(cfg: RunConfig) -> int:
    """Images per optimiser step over all processes."""
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    return (
        cfg.data.batch_size
        * max(devices, 1)
        * cfg.trainer.num_nodes
        * (cfg.trainer.accumulate_grad_batches)
    )


def scaled_lr(cfg: RunConfig) -> float:
    """lr * global batch / 256 (the linear scaling rule of SimCLR / MoCo)."""
    o = cfg.optim
    return o.lr * global_batch(cfg) / 256 if o.scale_lr else o.lr


def build_method(cfg: RunConfig, dm: HexDataModule) -> SSLMethod:
    """Compose backbone, heads and loss; ``dm`` must be set up (stats, classes)."""
    cls, params = method_class(cfg)
    try:
        with torch.random.fork_rng(devices=[]):  # init depends on the seed alone (paired runs)
            torch.manual_seed(derived_seed(cfg.seed, "backbone"))
            backbone = build_backbone(cfg.backbone.name, **cfg.backbone.kwargs)
    except ValueError as err:
        raise ConfigError(f"backbone: {err}") from None
    denominator = run_denominator(cfg, cls.contrastive)
    extra = None
    if cfg.hex.enabled and not cls.contrastive:  # HEX_SPEC 6: weighted extra term
        extra = WeightedTerm(InfoNCE(cfg.hex.temperature, denominator), cfg.hex.alpha)
        denominator = InfoNCEDenominator()
    preset = augment_preset(cfg)
    mean, std = dm.mean, dm.std
    try:
        augment = build_augmentation(
            preset,
            cfg.data.image_size,
            mean,
            std,
            **cfg.data.aug_overrides,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"data.augment / data.aug_overrides: {err}") from None
    eval_augment = build_augmentation("eval", cfg.data.image_size, mean, std)
    return cls(
        backbone,
        params,
        denominator,
        dm.num_classes,
        augment,
        eval_augment,
        cfg.optim,
        scaled_lr(cfg),
        extra_term=extra,
        seed=cfg.seed,
    )
