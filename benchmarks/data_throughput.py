"""Data pipeline throughput: loader, on-device augmentation, and a whole training step.

Measures, on CPU by default:
- the in-memory uint8 loader alone (images/s);
- the SimCLR augmentation alone (2 views, 32 px, batch 256; images/s);
- a full SimCLR training step (ResNet-18 CIFAR stem, batch 256, 32 px) via
  ``step_overhead.step_times``.
Target (issue 4): augmentation at most 15 % of the step.

    python benchmarks/data_throughput.py [--width 64] [--batch-size 256] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hexssl.data.datamodule import HexDataModule
from hexssl.data.transforms import DATASET_STATS, build_augmentation
from step_overhead import step_times  # benchmarks/ is on sys.path when run as a script

RESULTS = Path(__file__).parent / "results"


def median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loader_rate(batch: int) -> float:
    dm = HexDataModule("synthetic", batch_size=batch)
    dm.setup()
    start, n = time.perf_counter(), 0
    for images, *_ in dm.train_dataloader():
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def augment_seconds(batch: int, repeats: int) -> float:
    aug = build_augmentation("simclr", 32, *DATASET_STATS["cifar10"])
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    return median_seconds(lambda: aug(images, generator=gen), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20, help="augmentation repetitions")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    b = args.batch_size
    aug_s = augment_seconds(b, args.repeats)
    step = statistics.median(step_times("simclr", False, args))
    res = dict(
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        batch_size=b,
        backbone=f"resnet18 cifar stem width {args.width}",
        loader_img_per_s=loader_rate(b),
        augment_img_per_s=b / aug_s,
        augment_s=aug_s,
        step_s=step,
        step_img_per_s=b / step,
        augment_share_of_step=aug_s / step,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_throughput.json").write_text(json.dumps(res, indent=2))
    md = (
        f"Data throughput, CPU ({res['threads']} threads, torch {res['torch']}), batch {b}, "
        f"32 px, {res['backbone']}.\n\n"
        "| stage | images/s | seconds per batch |\n|---|---|---|\n"
        f"| uint8 loader (in memory) | {res['loader_img_per_s']:.0f} | "
        f"{b / res['loader_img_per_s']:.4f} |\n"
        f"| SimCLR augmentation (2 views) | {res['augment_img_per_s']:.0f} | {aug_s:.4f} |\n"
        f"| full training step | {res['step_img_per_s']:.1f} | {step:.3f} |\n\n"
        f"Augmentation share of a training step: {100 * res['augment_share_of_step']:.1f} % "
        "(target: at most 15 %).\n"
    )
    (args.out / "data_throughput.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
