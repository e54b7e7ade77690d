"""A procedurally generated hierarchical image dataset: no files, deterministic from a seed.

Superclass s = a texture family over the whole image (horizontal stripes, vertical
stripes, checkerboard, dots, rings, ...) plus a colour palette (hue s / n_super).
Class (s, k) = a foreground shape k (disk, square, triangle, cross, ...) drawn inside the
superclass's texture and palette. So the superclass is an easy, global cue and the class
a harder, local one that survives colour jitter and grayscale (shape and texture are
luminance patterns), which is what SSL on CPU can learn in minutes.

Per-image nuisance: shape position (+-20 % of the image), size (radius 45-75 % of the
half side), rotation (+-20 deg), texture phase and frequency (+-15 %), palette jitter,
random light-on-dark or dark-on-light polarity, and pixel noise.

Difficulty: ``texture_strength`` (how strongly the texture modulates the colours) and
``hue_spread`` (palette hue jitter around the superclass's hue; 0.5 draws any hue, so
colour says nothing about the superclass) weaken the superclass cue; ``noise`` hides
both cues. The defaults make the superclass nearly trivial; the demo uses a harder
setting so that superclass kNN does not saturate.

Defaults: 5 superclasses x 4 classes = 20 classes, 32 px, 250 train / 50 val images per
class (5,000 / 1,000 images); the train split takes about 1 s on one CPU core.

Example:
    >>> ds = make_synthetic("train", n_per_class=10)
    >>> ds.images.shape, ds.class_names[:2], ds.superclass_names[0]
    (torch.Size([200, 3, 32, 32]), ['hstripes/disk', 'hstripes/square'], 'hstripes')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from hexssl.data.base import TensorImageDataset

Texture = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
Shape = Callable[[Tensor, Tensor], Tensor]
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
_CHUNK = 1024
_SUPERSAMPLE = 2  # render at 2x and average-pool: antialiased edges


# ---------------------------------------------------- textures (superclass cue), in [-1, 1]
# Arguments: x, y (B, S, S) in [-1, 1]; f (B, 1, 1) cycles per unit; phase (B, 1, 1).
def _hstripes(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * f * y + ph)


def _vstripes(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * f * x + ph)


def _checker(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return torch.tanh(4 * torch.sin(math.pi * f * x + ph) * torch.sin(math.pi * f * y + ph))


def _dots(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return 2 * (torch.cos(math.pi * f * x + ph) * torch.cos(math.pi * f * y + ph) > 0.5).float() - 1


def _rings(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * f * (x**2 + y**2).sqrt() + ph)


def _diagonal(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    u, v = (x + y) / math.sqrt(2), (x - y) / math.sqrt(2)  # flip-symmetric diagonal plaid
    return torch.sin(2 * math.pi * f * u + ph) * torch.sin(2 * math.pi * f * v + ph)


def _grid(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    lines = torch.maximum(
        torch.cos(math.pi * f * x + ph) ** 8, torch.cos(math.pi * f * y + ph) ** 8
    )
    return 2 * lines - 1


def _flat(x: Tensor, y: Tensor, f: Tensor, ph: Tensor) -> Tensor:
    return torch.zeros_like(x)


TEXTURES: dict[str, Texture] = {
    "hstripes": _hstripes, "vstripes": _vstripes, "checker": _checker, "dots": _dots,
    "rings": _rings, "diagonal": _diagonal, "grid": _grid, "flat": _flat,
}  # fmt: skip


# ------------------------------------------------------------- shapes (class cue), masks
# Arguments: u, v (B, S, S) shape-centred coordinates, 1 = the shape's radius.
SHAPES: dict[str, Shape] = {
    "disk": lambda u, v: u**2 + v**2 < 0.8,
    "square": lambda u, v: torch.maximum(u.abs(), v.abs()) < 0.72,
    "triangle": lambda u, v: (v < 0.6) & (u.abs() < (v + 0.85) * 0.6),
    "cross": lambda u, v: ((u.abs() < 0.3) & (v.abs() < 0.9)) | ((v.abs() < 0.3) & (u.abs() < 0.9)),
    "ring": lambda u, v: ((u**2 + v**2).sqrt() - 0.75).abs() < 0.2,
    "diamond": lambda u, v: u.abs() + v.abs() < 0.95,
    "bars": lambda u, v: ((v.abs() - 0.45).abs() < 0.18) & (u.abs() < 0.85),
    "xshape": lambda u, v: (
        ((u.abs() - v.abs()).abs() < 0.25) & (torch.maximum(u.abs(), v.abs()) < 0.85)
    ),
}


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] to RGB in [0, 1].

    Shape:
        h, s, v: (...,) -> (..., 3)
    """
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    k = (n + h.unsqueeze(-1) * 6) % 6  # (..., 3)
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * (torch.minimum(k, 4 - k).clamp(0, 1))


def _u(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, 1, 1, generator=g)  # (n, 1, 1)


def _palettes(
    sup: Tensor, n_super: int, hue_spread: float, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Background and foreground colours of each image (superclass hue +- ``hue_spread``).

    Shape:
        sup: (n,) -> two (n, 1, 1, 3)
    """
    n = sup.shape[0]
    hue = (sup.view(n, 1, 1).float() / n_super + _u(n, -hue_spread, hue_spread, g)) % 1
    dark, light = _u(n, 0.25, 0.4, g), _u(n, 0.8, 0.95, g)
    swap = torch.rand(n, 1, 1, generator=g) < 0.5  # random polarity
    v_bg, v_fg = torch.where(swap, light, dark), torch.where(swap, dark, light)
    bg = hsv_to_rgb(hue, _u(n, 0.5, 0.7, g), v_bg)
    fg = hsv_to_rgb((hue + 0.08) % 1, _u(n, 0.6, 0.9, g), v_fg)
    return bg, fg


@dataclass(frozen=True)
class Difficulty:
    """How visible each cue is (see the module docstring)."""

    noise: float = 0.06
    texture_strength: float = 0.35
    hue_spread: float = 0.03


def render(
    sup: Tensor, shape_idx: Tensor, n_super: int, size: int, d: Difficulty, g: torch.Generator
) -> Tensor:
    """Render images of superclass ``sup`` (texture, palette) and shape ``shape_idx``.

    Shape:
        sup, shape_idx: (n,) -> (n, 3, size, size) uint8
    """
    n, S = sup.shape[0], size * _SUPERSAMPLE
    lin = (torch.arange(S) + 0.5) / S * 2 - 1
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    x, y = x.unsqueeze(0), y.unsqueeze(0)  # (1, S, S), broadcast against (n, 1, 1) parameters
    cx, cy, r = _u(n, -0.2, 0.2, g), _u(n, -0.2, 0.2, g), _u(n, 0.45, 0.75, g)
    th = _u(n, -math.pi / 9, math.pi / 9, g)
    u = ((x - cx) * th.cos() + (y - cy) * th.sin()) / r  # (n, S, S)
    v = (-(x - cx) * th.sin() + (y - cy) * th.cos()) / r
    freq, phase = 2.5 * _u(n, 0.85, 1.15, g), _u(n, 0.0, 2 * math.pi, g)
    tex, mask = torch.zeros(n, S, S), torch.zeros(n, S, S, dtype=torch.bool)
    names, shapes = list(TEXTURES), list(SHAPES)
    for i in range(n_super):  # loops over classes, not images
        sel = sup == i
        tex[sel] = TEXTURES[names[i]](x, y, freq[sel], phase[sel]).expand(-1, S, S)
    for k in shape_idx.unique().tolist():
        sel = shape_idx == k
        mask[sel] = SHAPES[shapes[k]](u[sel], v[sel])
    tex = (
        F.avg_pool2d(tex.unsqueeze(1), _SUPERSAMPLE).squeeze(1).unsqueeze(-1)
    )  # (n, size, size, 1)
    m = F.avg_pool2d(mask.unsqueeze(1).float(), _SUPERSAMPLE).squeeze(1).unsqueeze(-1)  # coverage
    bg, fg = _palettes(sup, n_super, d.hue_spread, g)  # (n, 1, 1, 3)
    ts = d.texture_strength  # the foreground carries 3/7 of the background's modulation
    img = torch.lerp(bg * (1 + ts * tex), fg * (1 + 3 / 7 * ts * tex), m)  # (n, size, size, 3)
    img = img.permute(0, 3, 1, 2) + d.noise * torch.randn(n, 3, size, size, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def make_synthetic(
    split: str = "train",
    n_super: int = 5,
    n_per_super: int = 4,
    n_per_class: int | None = None,
    image_size: int = 32,
    seed: int = 0,
    noise: float = 0.06,
    texture_strength: float = 0.35,
    hue_spread: float = 0.03,
) -> TensorImageDataset:
    """Generate the synthetic hierarchical dataset (see the module docstring).

    Args:
        split: "train", "val" or "test"; each split uses its own random stream.
        n_super: number of superclasses (texture families), at most 8.
        n_per_super: classes per superclass (shapes), at most 8.
        n_per_class: images per class (default 250 for train, 50 otherwise).
        image_size: side in pixels.
        seed: base seed; the same arguments always give the same images.
        noise: std of the per-pixel Gaussian noise (images in [0, 1]).
        texture_strength: texture modulation of the colours (0: no texture cue).
        hue_spread: palette hue jitter around the superclass hue, in turns of the colour
            wheel (0.5: any hue, no colour cue).

    Shape:
        images: (N, 3, image_size, image_size) uint8 with
        N = n_super * n_per_super * n_per_class; label = superlabel * n_per_super + shape.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(
            f"unknown split {split!r} for synthetic; valid splits: {list(SPLIT_SEEDS)}"
        )
    if not (1 <= n_super <= len(TEXTURES) and 1 <= n_per_super <= len(SHAPES)):
        raise ValueError(
            f"n_super={n_super}, n_per_super={n_per_super}: "
            f"need 1..{len(TEXTURES)} and 1..{len(SHAPES)}"
        )
    if not (0.0 <= texture_strength <= 1.0 and 0.0 <= hue_spread <= 0.5 and noise >= 0.0):
        raise ValueError(
            f"texture_strength={texture_strength} (need 0..1), hue_spread={hue_spread} "
            f"(need 0..0.5), noise={noise} (need >= 0)"
        )
    difficulty = Difficulty(noise, texture_strength, hue_spread)
    n_per_class = n_per_class or (250 if split == "train" else 50)
    g = torch.Generator().manual_seed(seed * 1009 + SPLIT_SEEDS[split])
    n_classes = n_super * n_per_super
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(labels.shape[0], generator=g)]  # (N,)
    sup, shape = labels // n_per_super, labels % n_per_super
    chunks = [
        render(sup[i : i + _CHUNK], shape[i : i + _CHUNK], n_super, image_size, difficulty, g)
        for i in range(0, labels.shape[0], _CHUNK)
    ]
    super_names = list(TEXTURES)[:n_super]
    class_names = [f"{t}/{s}" for t in super_names for s in list(SHAPES)[:n_per_super]]
    return TensorImageDataset(torch.cat(chunks), labels, sup, class_names, super_names)


def read_synthetic(
    root: str | Path | None = None, split: str = "train", **kw: int | float
) -> TensorImageDataset:
    """Registry adapter: ``root`` is ignored (nothing is read from disk)."""
    return make_synthetic(split, **kw)  # type: ignore[arg-type]
