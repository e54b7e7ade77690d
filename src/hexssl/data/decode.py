"""Decoding images to uint8 arrays: libjpeg-turbo (kornia_rs) for JPEGs, Pillow otherwise.

Images are decoded once, resized in batches with torch's uint8 antialiased bilinear kernel
(identical to Pillow's BILINEAR) and stacked into one tensor; :func:`decode_many` spreads
chunks over threads.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hexssl.data.scan import IMAGE_EXTENSIONS
from hexssl.errors import DataError

_CHUNK = 256  # images per decode task


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, P, CMYK, RGBA, I;16...) to RGB; alpha is dropped."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return img.convert("RGB")


def _load_turbo() -> Callable[[bytes, str], np.ndarray] | None:
    """kornia_rs's libjpeg-turbo decoder (a dependency of hexssl): ~3x faster than Pillow."""
    try:
        from kornia_rs.io import decode_image_jpegturbo
    except ImportError:
        return None
    fn: Callable[[bytes, str], np.ndarray] = decode_image_jpegturbo
    return fn


_TURBO = _load_turbo()


def decode_native(data: bytes) -> np.ndarray | None:
    """Decode bytes to an (H, W, 3) uint8 array at native size; ``None`` if unreadable.

    JPEGs go through libjpeg-turbo when available; everything else, and any JPEG it
    rejects (CMYK, unusual markers), through Pillow with :func:`to_rgb`.
    """
    if _TURBO is not None and data[:2] == b"\xff\xd8":
        try:
            arr = _TURBO(data, "rgb")
            if arr.ndim == 3 and arr.shape[2] == 3:
                return arr
        except Exception:
            pass  # let Pillow have a go
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(to_rgb(img), dtype=np.uint8)
    except Exception:  # any decoder failure means "corrupt file": skipped and counted
        return None


def resize_square(arrays: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Centre-crop to squares and resize to ``size`` (antialiased bilinear), batched by shape.

    Shape:
        arrays: (H_i, W_i, 3) uint8 each -> (size, size, 3) uint8 each
    """
    out: list[np.ndarray] = list(arrays)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(arrays):
        if a.shape != (size, size, 3):
            by_shape.setdefault(a.shape, []).append(i)
    for (h, w, _), idx in by_shape.items():
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(
            0, 3, 1, 2
        )  # channels-last
        x = x[..., top : top + side, left : left + side]  # (n, 3, side, side) uint8
        # uint8 channels-last antialiased bilinear has a fast SIMD kernel (PIL's BILINEAR filter)
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        y = x.permute(0, 2, 3, 1).numpy()  # (n, size, size, 3)
        for j, i in enumerate(idx):
            out[i] = y[j]
    return out


def decode_image(source: bytes | str, image_size: int | None = None) -> np.ndarray | None:
    """Decode one file (path or bytes) to an (H, W, 3) uint8 array; ``None`` if unreadable.

    Shape:
        returns: (image_size, image_size, 3) when ``image_size`` is set, else native (H, W, 3).
    """
    return decode_chunk([source], image_size)[0]


def _read(source: bytes | str) -> bytes | None:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError:
        return None


def decode_chunk(sources: Sequence[bytes | str], image_size: int | None) -> list[np.ndarray | None]:
    """Decode a chunk of files, then resize the readable ones together (see resize_square)."""
    arrays = [d if (d := _read(s)) is None else decode_native(d) for s in sources]
    if image_size is None:
        return arrays
    good = [i for i, a in enumerate(arrays) if a is not None]
    resized = resize_square([arrays[i] for i in good], image_size)  # type: ignore[misc]
    for i, a in zip(good, resized):
        arrays[i] = a
    return arrays


def decode_many(
    sources: Sequence[bytes | str], image_size: int | None, workers: int | None = None
) -> list[np.ndarray | None]:
    """Decode in chunks, on a thread pool when ``workers`` > 1 (default: 1).

    Threads give little here: decoding small images is dominated by Python-side work
    that holds the GIL (measured: 2 threads no faster than 1 on tiny-imagenet).
    """
    chunks = [sources[i : i + _CHUNK] for i in range(0, len(sources), _CHUNK)]
    workers = workers or 1

    def run(chunk: Sequence[bytes | str]) -> list[np.ndarray | None]:
        return decode_chunk(chunk, image_size)

    if workers == 1 or len(chunks) <= 1:
        return [a for c in chunks for a in run(c)]
    with ThreadPoolExecutor(workers) as pool:
        return [a for c in pool.map(run, chunks) for a in c]


def stack_decoded(arrays: list[np.ndarray | None], names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Stack decoded arrays into (N, 3, H, W) uint8; returns (images, kept mask).

    Unreadable files (``None``) are dropped with one warning that counts them.
    """
    keep = torch.tensor([a is not None for a in arrays], dtype=torch.bool)
    good = [a for a in arrays if a is not None]
    bad = [n for n, a in zip(names, arrays) if a is None]
    if bad and good:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[:3]}", stacklevel=3)
    if not good:
        raise DataError(
            f"no readable images among {len(arrays)} file(s), e.g. {list(names[:3])}; "
            f"every file failed to decode (check they are {'/'.join(IMAGE_EXTENSIONS)} images)"
        )
    sizes = {a.shape for a in good}
    if len(sizes) > 1:
        raise ValueError(
            f"images have different sizes {sorted(sizes)[:3]}; "
            "pass image_size=... to resize them at load time"
        )
    return torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2).contiguous(), keep  # (N, 3, H, W)
