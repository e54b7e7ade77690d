"""Batched, on-device SSL augmentations: uint8 (B, 3, H, W) in, a list of normalised views out.

Every random parameter is drawn per sample for the whole batch at once (no per-image
Python loop), from an optional ``torch.Generator`` on the generator's device. A seed
gives the same views on every run on the same kind of device; CPU and CUDA generators
are different random streams, so the same seed gives different views on the two (the
training step draws on the images' device, so that no random tensor is copied from the
host). Crop, resize and flip are one ``F.grid_sample`` call with a per-sample affine
grid. On accelerators nothing here synchronises with the host: no value is read back,
no shape depends on data, and no constant is copied from the host after the first call.

Deviations from torchvision's PIL pipeline (kept for speed, all documented here):
- crops are sub-pixel (continuous box corners), bilinear, without antialiasing;
- colour jitter applies its four ops in one random order per batch (torchvision: per
  image), and hue is a rotation of the chroma plane in YIQ space (as NVIDIA DALI) rather
  than an HSV shift; each op clamps to [0, 1] as torchvision does.

Example:
    >>> aug = build_augmentation("simclr", 32, *DATASET_STATS["cifar10"])
    >>> views = aug(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    >>> [tuple(v.shape) for v in views]
    [(8, 3, 32, 32), (8, 3, 32, 32)]
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.run.hostsync import avoid_host_sync

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

# Per-dataset (mean, std) of RGB in [0, 1].
DATASET_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "unlabeled": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": ((0.4003, 0.3858, 0.3799), (0.2842, 0.2720, 0.2553)),  # default train split
}

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)
SMALL_IMAGE = 64  # at or below this size the CIFAR-scale defaults apply


@dataclass(frozen=True)
class ViewConfig:
    """Parameters of one augmented view (probabilities ``*_p`` are per sample).

    Attributes:
        size: output side in pixels.
        crop: random-resized crop (True) or resize + centre crop (False, for eval).
        crop_scale: crop area range, as a fraction of the image.
        crop_ratio: crop aspect-ratio range (w / h).
        flip_p: horizontal flip probability.
        jitter_p: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths s (factor in [1-s, 1+s]).
        hue: hue shift strength (shift in [-hue, hue] of a full turn), at most 0.5.
        gray_p: grayscale probability.
        blur_p: Gaussian blur probability.
        blur_sigma: blur sigma range in output pixels (as torchvision and solo-learn).
        solar_p: solarisation probability (x -> 1 - x where x >= 0.5).
    """

    size: int
    crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solar_p: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "solar_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} strength must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")


# ----------------------------------------------------------------------- randomness
def uniform(
    n: int, lo: float, hi: float, gen: torch.Generator | None, device: torch.device
) -> Tensor:
    """(n,) uniform in [lo, hi), drawn on the generator's device, returned on ``device``."""
    where = gen.device if gen is not None else torch.device("cpu")
    return (lo + (hi - lo) * torch.rand(n, generator=gen, device=where)).to(device)


def bernoulli(n: int, p: float, gen: torch.Generator | None, device: torch.device) -> Tensor:
    """(n,) bool mask, True with probability ``p``."""
    return uniform(n, 0.0, 1.0, gen, device) < p


# ------------------------------------------------------------------- crop and flip
def sample_crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    gen: torch.Generator | None, device: torch.device,
) -> Tensor:  # fmt: skip
    """Random-resized-crop boxes (x0, y0, w, h) in pixels, torchvision's 10-try rule.

    Shape:
        returns: (n, 4)
    """
    tries = 10
    area = height * width * uniform(n * tries, *scale, gen, device).view(n, tries)
    log_r = uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), gen, device).view(n, tries)
    w, h = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()  # (n, tries)
    ok = (w <= width) & (h <= height)
    first = ok.float().argmax(dim=1, keepdim=True)  # first valid try  # (n, 1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)  # (n,)
    fw, fh = _fallback_size(height, width, ratio)
    none_ok = ~ok.any(dim=1)
    w, h = torch.where(none_ok, fw, w), torch.where(none_ok, fh, h)
    x0 = uniform(n, 0.0, 1.0, gen, device) * (width - w)
    y0 = uniform(n, 0.0, 1.0, gen, device) * (height - h)
    return torch.stack([x0, y0, w, h], dim=1)  # (n, 4)


def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's fallback: the largest centred crop with a ratio inside ``ratio``."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return float(width), width / ratio[0]
    if in_ratio > ratio[1]:
        return height * ratio[1], float(height)
    return float(width), float(height)


def crop_flip_resize(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop each image to its box, flip where asked, and resize to ``size`` (one grid_sample).

    Shape:
        x: (B, 3, H, W) float; boxes: (B, 4) pixels (x0, y0, w, h); flip: (B,) bool
        returns: (B, 3, size, size)
    """
    B, _, H, W = x.shape
    x0, y0, w, h = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(x.dtype)  # (B,) -1 flips x
    theta = torch.zeros(B, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = sign * w / W  # output [-1, 1] -> crop width in input coordinates
    theta[:, 0, 2] = (2 * x0 + w) / W - 1  # crop centre (align_corners=False convention)
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = (2 * y0 + h) / H - 1
    grid = F.affine_grid(theta, [B, 3, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def centre_resize(x: Tensor, size: int) -> Tensor:
    """Centre-crop to a square and resize (antialiased when shrinking).

    Shape:
        x: (B, 3, H, W) -> (B, 3, size, size)
    """
    H, W = x.shape[-2:]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side == size:
        return x
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
    )


# --------------------------------------------------------------------- colour ops
def grayscale(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB (B, 3, H, W)."""
    r, g, b = GRAY_WEIGHTS  # Python scalars: no host-to-device copy
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    """x * f per sample. Shape: x (B, 3, H, W), f (B,)."""
    return (x * f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    """Blend with each image's mean luma (torchvision's definition). Shape: f (B,)."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return torch.lerp(mean, x, f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the grayscale image. Shape: f (B,)."""
    return torch.lerp(grayscale(x), x, f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


_ON_DEVICE: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}


def _yiq_matrices(x: Tensor) -> tuple[Tensor, Tensor]:
    """RGB->YIQ and YIQ->RGB on ``x``'s device and dtype, copied there once."""
    key = (x.device, x.dtype)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = (_RGB2YIQ.to(x), _YIQ2RGB.to(x))
    return _ON_DEVICE[key]


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate chroma (I, Q) by ``shift`` turns in YIQ space: one (3, 3) matrix per sample.

    Shape:
        x: (B, 3, H, W); shift: (B,) in [-0.5, 0.5]
    """
    angle = 2 * math.pi * shift
    cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)
    to_yiq, to_rgb = _yiq_matrices(x)
    m = to_rgb @ rot @ to_yiq  # (B, 3, 3)
    B, C, H, W = x.shape
    return torch.bmm(m, x.reshape(B, C, H * W)).view(B, C, H, W).clamp_(0.0, 1.0)


def colour_jitter(x: Tensor, cfg: ViewConfig, gen: torch.Generator | None) -> Tensor:
    """Colour jitter with probability ``cfg.jitter_p``; unselected images get identity factors."""
    B, dev = x.shape[0], x.device
    on = bernoulli(B, cfg.jitter_p, gen, dev).to(x.dtype)  # (B,)

    def factor(s: float) -> Tensor:
        return 1.0 + on * uniform(B, -s, s, gen, dev)  # (B,) 1 where off

    ops: list[tuple[Callable[[Tensor, Tensor], Tensor], Tensor, bool]] = [
        (adjust_brightness, factor(cfg.brightness), cfg.brightness > 0),
        (adjust_contrast, factor(cfg.contrast), cfg.contrast > 0),
        (adjust_saturation, factor(cfg.saturation), cfg.saturation > 0),
        (adjust_hue, on * uniform(B, -cfg.hue, cfg.hue, gen, dev), cfg.hue > 0),
    ]
    for i in jitter_order(gen):
        op, arg, active = ops[i]
        x = op(x, arg) if active else x
    return x


def jitter_order(gen: torch.Generator | None) -> list[int]:
    """The batch's random order of the four colour-jitter ops.

    From a CPU generator (or none) it is drawn from that generator. Reading a CUDA draw
    back would stall the GPU queue, so from an accelerator's generator the order comes
    from a host RNG seeded by the generator's seed and offset, both kept on the host:
    still a pure function of the generator's state (resume stays exact).
    """
    if gen is None or not avoid_host_sync(gen.device):
        return torch.randperm(4, generator=gen).tolist()
    try:
        offset = gen.get_offset()  # CUDA (Philox) generators keep it on the host
    except (AttributeError, RuntimeError):  # CPU generators have none
        offset = 0
    return random.Random(gen.initial_seed() * 1_000_003 + offset).sample(range(4), 4)


def on_subset(x: Tensor, on: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` only to the images where ``on`` is True.

    On the CPU only the selected images are computed (cheap for small p); on an
    accelerator every image is, and ``torch.where`` keeps the selected results: the
    selection's size would otherwise have to be read back (a host sync).

    Shape:
        x: (B, 3, H, W); on: (B,) bool
    """
    if avoid_host_sync(x.device):
        return torch.where(on.view(-1, 1, 1, 1), fn(x), x)
    idx = on.nonzero().squeeze(1)  # (b,)
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = fn(x[idx])
    return out


def random_grayscale(x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
    """Replace images by their luma (3 equal channels) with probability ``p``."""
    on = bernoulli(x.shape[0], p, gen, x.device)
    return on_subset(x, on, lambda v: grayscale(v).expand_as(v))


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding.

    Kernel size is about 10 % of the image side (23 px at 224, as SimCLR).

    Shape:
        x: (B, 3, H, W); sigma: (B,) pixels
    """
    B, C, H, W = x.shape
    radius = max(1, round(0.05 * max(H, W)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)  # (K,)
    k = torch.exp(-(t**2) / (2 * sigma.view(-1, 1) ** 2))  # (B, K)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, B * C, H, W), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(B * C, 1, 1, -1), groups=B * C)  # horizontal pass
    y = F.conv2d(y, k.view(B * C, 1, -1, 1), groups=B * C)  # vertical pass
    return y.view(B, C, H, W)


def random_blur(x: Tensor, cfg: ViewConfig, gen: torch.Generator | None) -> Tensor:
    """Blur a random subset (probability ``cfg.blur_p``), sigma uniform in ``cfg.blur_sigma``."""
    B = x.shape[0]
    on = bernoulli(B, cfg.blur_p, gen, x.device)
    sigma = uniform(B, *cfg.blur_sigma, gen, x.device)
    if avoid_host_sync(x.device):  # see on_subset: no data-dependent shapes off the CPU
        return torch.where(on.view(-1, 1, 1, 1), gaussian_blur(x, sigma), x)
    idx = on.nonzero().squeeze(1)  # (b,)
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = gaussian_blur(x[idx], sigma[idx])  # only the selected images are convolved
    return out


def random_solarize(x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
    """x -> 1 - x where x >= 0.5, for each image with probability ``p``."""
    on = bernoulli(x.shape[0], p, gen, x.device)
    return on_subset(x, on, lambda v: torch.where(v >= 0.5, 1.0 - v, v))


# -------------------------------------------------------------------------- modules
class ViewAugment(nn.Module):
    """One view: crop/flip/resize, colour jitter, grayscale, blur, solarise, normalise.

    Args:
        cfg: the view's parameters.
        mean: per-channel mean of RGB in [0, 1].
        std: per-channel std.

    Shape:
        x: (B, 3, H, W) float in [0, 1] -> (B, 3, cfg.size, cfg.size) normalised.

    Example:
        >>> view = ViewAugment(ViewConfig(size=16), (0.5,) * 3, (0.25,) * 3)
        >>> view(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, cfg: ViewConfig, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values with std > 0, got mean={mean}, std={std}")
        self.cfg = cfg
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, precropped: bool = False
    ) -> Tensor:
        """``precropped``: ``x`` already is this view's random-resized crop (decode time)."""
        cfg, gen = self.cfg, generator
        if cfg.crop:
            B, _, H, W = x.shape
            if precropped:  # the whole pre-crop: flip and resize only
                boxes = x.new_zeros(B, 4)  # (B, 4) the whole image, filled on device
                boxes[:, 2], boxes[:, 3] = W, H
            else:
                boxes = sample_crop_boxes(B, H, W, cfg.crop_scale, cfg.crop_ratio, gen, x.device)
            x = crop_flip_resize(x, boxes, bernoulli(B, cfg.flip_p, gen, x.device), cfg.size)
        else:
            x = centre_resize(x, cfg.size)
        if cfg.jitter_p > 0:
            x = colour_jitter(x, cfg, gen)
        if cfg.gray_p > 0:
            x = random_grayscale(x, cfg.gray_p, gen)
        if cfg.blur_p > 0:
            x = random_blur(x, cfg, gen)
        if cfg.solar_p > 0:
            x = random_solarize(x, cfg.solar_p, gen)
        return (x - self.mean.to(x)) / self.std.to(x)


class MultiViewAugment(nn.Module):
    """Several views of one uint8 batch, each with its own random parameters.

    Args:
        views: one :class:`ViewConfig` per output view.
        mean: per-channel mean of RGB in [0, 1].
        std: per-channel std.

    Shape:
        images: (B, 3, H, W) uint8 (or float in [0, 1]) -> list of V (B, 3, h_v, w_v) float;
        or (B, V, 3, H, W): one decode-time random-resized crop per view (lazy ImageNet),
        which each view only flips, resizes and colours.

    Example:
        >>> aug = MultiViewAugment([ViewConfig(32), ViewConfig(16)], (0.5,) * 3, (0.25,) * 3)
        >>> [v.shape[-1] for v in aug(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))]
        [32, 16]
    """

    def __init__(
        self, views: Sequence[ViewConfig], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        if not views:
            raise ValueError("MultiViewAugment needs at least one ViewConfig")
        self.views = nn.ModuleList(ViewAugment(v, mean, std) for v in views)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if images.dim() == 5 and images.shape[1:3] == (len(self.views), 3):
            return [view(x[:, i], generator, precropped=True) for i, view in enumerate(self.views)]
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected images of shape (B, 3, H, W) or (B, {len(self.views)}, 3, H, W) "
                f"(one pre-crop per view), got {tuple(images.shape)}"
            )
        return [view(x, generator) for view in self.views]

    @property
    def configs(self) -> list[ViewConfig]:
        """The :class:`ViewConfig` of each view."""
        return [v.cfg for v in self.views]  # type: ignore[misc]


# -------------------------------------------------------------------------- presets
def colour_defaults(image_size: int) -> dict[str, Any]:
    """Jitter/blur defaults by image scale (HEX_SPEC 7).

    CIFAR scale (<= 64 px): jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, no blur (blur
    destroys 32 px images; solo-learn's CIFAR configs also turn it off). ImageNet scale:
    jitter (0.4, 0.4, 0.2, 0.1), blur p 0.5.
    """
    if image_size <= SMALL_IMAGE:
        return dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.0)
    return dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, blur_p=0.5)


def simclr_views(image_size: int) -> list[ViewConfig]:
    """Two identically distributed views (SimCLR, arXiv:2002.05709 appendix A)."""
    view = ViewConfig(image_size, **colour_defaults(image_size))
    return [view, view]


def byol_views(image_size: int) -> list[ViewConfig]:
    """Asymmetric pair (BYOL, arXiv:2006.07733 table 6): blur 1.0 / 0.1, solarise 0.0 / 0.2.

    Jitter is (0.4, 0.4, 0.2, 0.1) at every scale (BYOL paper; solo-learn's CIFAR BYOL
    config); at CIFAR scale blur is off in both views.
    """
    small = image_size <= SMALL_IMAGE
    base = ViewConfig(image_size, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    return [
        dataclasses.replace(base, blur_p=0.0 if small else 1.0, solar_p=0.0),
        dataclasses.replace(base, blur_p=0.0 if small else 0.1, solar_p=0.2),
    ]


def multicrop_views(
    image_size: int,
    num_local: int = 6,
    local_size: int | None = None,
    global_scale: tuple[float, float] = (0.14, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.14),
) -> list[ViewConfig]:
    """2 global + ``num_local`` small local crops (SwAV, arXiv:2006.09882: 2x224 + 6x96).

    ``local_size`` defaults to 96 px at >= 224 px and to half the image side below.
    """
    if num_local < 0:
        raise ValueError(f"num_local must be >= 0, got {num_local}")
    local_size = local_size or (96 if image_size >= 224 else max(8, image_size // 2))
    colour = colour_defaults(image_size)
    glob = ViewConfig(image_size, crop_scale=global_scale, **colour)
    local = ViewConfig(local_size, crop_scale=local_scale, **colour)
    return [glob, glob] + [local] * num_local


def eval_views(image_size: int) -> list[ViewConfig]:
    """One deterministic view: centre crop, resize, normalise."""
    off: dict[str, Any] = dict(flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0, solar_p=0.0)
    return [ViewConfig(image_size, crop=False, **off)]


PRESETS: dict[str, Callable[..., list[ViewConfig]]] = {
    "simclr": simclr_views,
    "byol": byol_views,
    "barlow": byol_views,  # Barlow Twins uses BYOL's augmentations (arXiv:2103.03230 sec. 4)
    "multicrop": multicrop_views,
    "eval": eval_views,
}
PRESET_OPTIONS = {"multicrop": ("num_local", "local_size", "global_scale", "local_scale")}
VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(ViewConfig))
RANGE_FIELDS = ("crop_scale", "crop_ratio", "blur_sigma")


def _is_per_view(key: str, value: Any) -> bool:
    """A list/tuple means one value per view, except a flat pair for a range field."""
    if not isinstance(value, (list, tuple)):
        return False
    return key not in RANGE_FIELDS or all(isinstance(x, (list, tuple)) for x in value)


def _field_value(key: str, value: Any) -> Any:
    return tuple(float(x) for x in value) if key in RANGE_FIELDS else value


def apply_overrides(views: list[ViewConfig], overrides: dict[str, Any]) -> list[ViewConfig]:
    """Set ViewConfig fields on every view; a list gives one value per view.

    Range fields (``crop_scale``, ``crop_ratio``, ``blur_sigma``) take a pair (YAML lists
    are fine) for every view, or a list of pairs for one per view.
    """
    out = list(views)
    for key, value in overrides.items():
        if key not in VIEW_FIELDS:
            raise ValueError(f"unknown augmentation option {key!r}; valid: {sorted(VIEW_FIELDS)}")
        values = list(value) if _is_per_view(key, value) else [value] * len(out)
        if len(values) != len(out):
            raise ValueError(f"{key}={value} has {len(values)} values for {len(out)} views")
        changes: list[dict[str, Any]] = [{key: _field_value(key, x)} for x in values]
        out = [dataclasses.replace(v, **c) for v, c in zip(out, changes)]
    return out


def build_views(preset: str, image_size: int, **overrides: Any) -> list[ViewConfig]:
    """The view configs of ``preset`` at ``image_size`` with ``overrides`` applied.

    Args:
        preset: a key of :data:`PRESETS`.
        image_size: output side of the (global) views.
        **overrides: :class:`ViewConfig` fields (``blur_p=0.5`` for every view, or a list
            such as ``solar_p=[0.0, 0.2]`` for one value per view) plus the preset's own
            options (multicrop: ``num_local``, ``local_size``, ``global_scale``,
            ``local_scale``).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; valid: {sorted(PRESETS)}")
    own = {k: overrides.pop(k) for k in PRESET_OPTIONS.get(preset, ()) if k in overrides}
    return apply_overrides(PRESETS[preset](image_size, **own), overrides)


def build_augmentation(
    preset: str, image_size: int, mean: Sequence[float], std: Sequence[float], **overrides: Any
) -> MultiViewAugment:
    """Build a batched multi-view augmentation.

    Args:
        preset: a key of :data:`PRESETS` ("simclr", "byol", "barlow", "multicrop", "eval").
        image_size: output side of the (global) views.
        mean: per-channel mean (see :data:`DATASET_STATS`).
        std: per-channel std.
        **overrides: see :func:`build_views`.

    Shape:
        forward: (B, 3, H, W) uint8 -> list of V (B, 3, h, w) float.

    Example:
        >>> aug = build_augmentation("byol", 32, *DATASET_STATS["cifar10"], gray_p=0.0)
        >>> g = torch.Generator().manual_seed(0)
        >>> len(aug(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), generator=g))
        2
    """
    return MultiViewAugment(build_views(preset, image_size, **overrides), mean, std)


def compute_stats(images: Tensor, max_images: int = 10_000) -> Stats:
    """Per-channel (mean, std) in [0, 1] of uint8 images (on an evenly spaced subset).

    Shape:
        images: (N, 3, H, W) uint8
    """
    step = max(1, images.shape[0] // max_images)
    x = images[::step].float().div_(255.0).transpose(0, 1).reshape(3, -1)  # (3, n*H*W)
    m, s = x.mean(dim=1).tolist(), x.std(dim=1).tolist()
    return (m[0], m[1], m[2]), (s[0], s[1], s[2])
