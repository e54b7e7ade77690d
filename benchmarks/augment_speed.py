"""Our batched augmentation against the same pipeline in ``kornia.augmentation`` (issue 8).

Both produce two SimCLR views of one uint8 batch with the same ops and parameters:
random-resized crop (scale 0.08-1, ratio 3/4-4/3) + horizontal flip p 0.5, colour
jitter p 0.8 (brightness, contrast, saturation, hue as in the preset), grayscale p 0.2,
normalisation; blur p 0.5 at ImageNet scale (sizes above 64 px), as our preset does.
Timed on CPU, median of repeats after warm-up, the machine otherwise idle.

    pip install -e .[bench]      # kornia is not a hexssl dependency
    python benchmarks/augment_speed.py [--batch 256] [--sizes 32 96] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from hexssl.data.transforms import build_augmentation, simclr_views

RESULTS = Path(__file__).parent / "results"
MEAN, STD = (0.48, 0.45, 0.40), (0.27, 0.26, 0.27)


def ours(size: int) -> Callable[[Tensor], list[Tensor]]:
    aug = build_augmentation("simclr", size, MEAN, STD)
    gen = torch.Generator().manual_seed(0)
    return lambda images: aug(images, generator=gen)


def kornia_pipeline(size: int) -> Callable[[Tensor], list[Tensor]]:
    """The same view in kornia.augmentation (its own random sampling)."""
    import kornia.augmentation as K

    v = simclr_views(size)[0]
    ops = [
        K.RandomResizedCrop((size, size), scale=v.crop_scale, ratio=v.crop_ratio),
        K.RandomHorizontalFlip(p=v.flip_p),
        K.ColorJitter(v.brightness, v.contrast, v.saturation, v.hue, p=v.jitter_p),
        K.RandomGrayscale(p=v.gray_p),
    ]
    if v.blur_p > 0:
        k = 2 * round(size * 0.05) + 1  # about 10 % of the side, odd
        ops.append(K.RandomGaussianBlur((k, k), v.blur_sigma, p=v.blur_p))
    ops.append(K.Normalize(torch.tensor(MEAN), torch.tensor(STD)))
    pipe = K.AugmentationSequential(*ops)

    def run(images: Tensor) -> list[Tensor]:
        x = images.float().div_(255.0)
        return [pipe(x), pipe(x)]

    return run


def median_ms(fn: Callable[[Tensor], list[Tensor]], images: Tensor, repeats: int) -> float:
    for _ in range(2):
        fn(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    try:
        import kornia
    except ModuleNotFoundError:
        raise SystemExit(
            "augment_speed.py times our augmentation against kornia.augmentation, which is "
            "not installed: pip install -e '.[bench]' (or pip install kornia)"
        ) from None

    rows = []
    for size in args.sizes:
        src = 64 if size <= 64 else int(size * 1.15)  # decoded images a bit larger than views
        images = torch.randint(0, 256, (args.batch, 3, src, src), dtype=torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ours = median_ms(ours(size), images, args.repeats)
            t_kornia = median_ms(kornia_pipeline(size), images, args.repeats)
        rows.append(dict(size=size, source=src, ours_ms=t_ours, kornia_ms=t_kornia))
        print(f"{size}px from {src}px: ours {t_ours:.1f} ms, kornia {t_kornia:.1f} ms", flush=True)
    res = dict(
        batch=args.batch,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        kornia=kornia.__version__,
        machine=platform.processor() or platform.machine(),
        rows=rows,
    )
    lines = [
        f"Two SimCLR views of a uint8 batch of {args.batch}, CPU ({res['threads']} threads, "
        f"torch {res['torch']}, kornia {res['kornia']}), median ms per batch.",
        "",
        "| view size | decoded size | ours ms | kornia.augmentation ms | kornia / ours |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['size']} | {r['source']} | {r['ours_ms']:.1f} | {r['kornia_ms']:.1f} | "
        f"{r['kornia_ms'] / r['ours_ms']:.1f}x |"
        for r in rows
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "augment_speed.json").write_text(json.dumps(res, indent=2))
    (args.out / "augment_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
