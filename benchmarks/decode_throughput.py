"""Lazy ImageNet decode throughput per core: one shared pre-crop (before) vs independent crops.

Writes full-size JPEGs (500 x 375, ImageNet's most common size, and 1000 x 750) with
photo-like content, then decodes them through ``LazyImageFolder`` in one process with
one thread (one DataLoader worker's share of a core):

- before: one decode-time crop of area (0.25, 1) per image (hexssl up to issue 10,
  when both views were re-cropped from that one pre-crop on the device);
- after: one independent crop of area (0.08, 1) per view, two views, decoded once.

Output 224 px. Prints and writes ``results/decode_throughput.{json,md}``.

    python benchmarks/decode_throughput.py [--images 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hexssl.data.imagenet import SIMCLR_CROP, LazyImageFolder

RESULTS = Path(__file__).parent / "results"
SIZES = ((500, 375), (1000, 750))
MODES = {
    "before: 1 shared pre-crop, area (0.25, 1)": [((0.25, 1.0), SIMCLR_CROP[1])],
    "after: 2 independent crops, area (0.08, 1)": [SIMCLR_CROP, SIMCLR_CROP],
}


def photo_like(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Smooth colour fields plus fine noise: JPEG sizes and decode times like photographs."""
    coarse = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    noisy = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_jpegs(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{size[0]}x{size[1]}_{i}.JPEG"
        photo_like(*size, rng).save(path, quality=90)
        paths.append(str(path))
    return paths


def items_per_s(files: list[str], crops: list, repeats: int) -> float:
    ds = LazyImageFolder(files, [0] * len(files), ["c"], image_size=224, crops=crops)
    ds[0]  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        rates.append(len(ds) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=48, help="JPEGs per image size")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            files = write_jpegs(Path(tmp), args.images, size)
            for mode, crops in MODES.items():
                rate = items_per_s(files, crops, args.repeats)
                rows.append({"image": f"{size[0]}x{size[1]}", "mode": mode, "items_per_s": rate})
    res = {"threads": 1, "torch": torch.__version__, "images": args.images, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode_throughput.json").write_text(json.dumps(res, indent=2))
    md = (
        f"Lazy ImageNet decode throughput, one process and one thread, 224 px output, "
        f"{args.images} JPEGs per size (quality 90), median of {args.repeats} passes. "
        "Measured on a shared 2-core machine under load from other jobs: compare the rows "
        "with each other, not with other machines.\n\n"
        "| image | decode | items/s per core |\n|---|---|---|\n"
        + "".join(f"| {r['image']} | {r['mode']} | {r['items_per_s']:.0f} |\n" for r in rows)
    )
    (args.out / "decode_throughput.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
