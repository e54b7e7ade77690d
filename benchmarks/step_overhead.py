"""Training-step time of whole methods with HEX off and on (SimCLR, Barlow Twins).

A step is what Lightning runs for one batch: on-device augmentation, forward, loss,
backward, LARS step (and the online probe). It is timed by a callback from
``on_train_batch_start`` to ``on_train_batch_end``, so data loading is excluded.
Models are built from the config exactly as ``hexssl train`` builds them: ResNet-18
with the CIFAR stem, 32 px synthetic images, the paper's projectors, HEX with the
adaptive threshold and no warm-up (so that it runs from the first step). For SimCLR
HEX replaces the denominator; for Barlow Twins it adds the weighted HEX-InfoNCE term
(HEX_SPEC 6). Reported: the median over the timed steps, after warm-up steps.

    python benchmarks/step_overhead.py                      # width 64, batch 256
    python benchmarks/step_overhead.py --width 8 --batch-size 32 --steps 2 --out /tmp/so
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hexssl.config import load_config
from hexssl.run.build import build_datamodule, build_method

RESULTS = Path(__file__).parent / "results"
METHODS = ("simclr", "barlow")
HEX = {"off": ["hex.enabled=false"], "on": ["hex.enabled=true", "hex.warmup_epochs=0"]}
N_CLASSES = 20  # the synthetic dataset's default 5 x 4 classes


class StepTimer(L.Callback):
    """Wall time of each training batch, from batch start to batch end."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer: Any, module: L.LightningModule, *args: Any) -> None:
        self._sync(module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, module: L.LightningModule, *args: Any) -> None:
        self._sync(module)
        self.times.append(time.perf_counter() - self._start)


def step_times(method: str, hex_on: bool, args: argparse.Namespace) -> list[float]:
    """Per-step seconds of ``warmup + steps`` training steps; the first ``warmup`` dropped."""
    total = args.warmup + args.steps
    per_class = math.ceil(total * args.batch_size / N_CLASSES)
    cfg = load_config(
        None,
        [
            f"method.name={method}",
            f"backbone.kwargs={{stem: cifar, width: {args.width}}}",
            f"data.batch_size={args.batch_size}",
            "data.image_size=32",
            f"data.options={{n_per_class: {per_class}}}",
            "eval.purity_every_n_steps=0",
            *HEX["on" if hex_on else "off"],
        ],
    )
    dm = build_datamodule(cfg)
    dm.setup()
    torch.manual_seed(0)
    model = build_method(cfg, dm)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=total,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, dm)
    return timer.times[args.warmup :]


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for method in args.methods:
        times = {k: step_times(method, k == "on", args) for k in HEX}
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append(dict(method=method, median_s=med, ratio=med["on"] / med["off"], all_s=times))
        print(f"{method}: HEX off {med['off']:.3f} s, on {med['on']:.3f} s", flush=True)
    return dict(
        accelerator=args.accelerator,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        backbone=f"resnet18 (cifar stem, width {args.width})",
        batch_size=args.batch_size,
        image_size=32,
        warmup_steps=args.warmup,
        timed_steps=args.steps,
        rows=rows,
    )


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Training-step time (augmentation, forward, backward, LARS step), {res['backbone']}, "
        f"batch {res['batch_size']}, {res['image_size']} px, {res['accelerator']} "
        f"({res['threads']} threads, torch {res['torch']}); median of {res['timed_steps']} "
        f"steps after {res['warmup_steps']} warm-up steps.",
        "",
        "| method | HEX off s | HEX on s | on / off |",
        "|---|---|---|---|",
    ]
    for r in res["rows"]:
        s = r["median_s"]
        lines.append(f"| {r['method']} | {s['off']:.3f} | {s['on']:.3f} | {r['ratio']:.3f}x |")
    lines += [
        "",
        "HEX on: paper variant, adaptive threshold (q = 0.99), no warm-up. SimCLR: HEX "
        "replaces the 2B x 2B denominator. Barlow Twins: 0.9 * Barlow + 0.1 * HEX-InfoNCE "
        "on the 8192-d projections (HEX_SPEC 6).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="registry names")
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--batch-size", type=int, default=256, help="images per step")
    ap.add_argument("--steps", type=int, default=7, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args()
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_overhead.json").write_text(json.dumps(res, indent=2))
    (args.out / "step_overhead.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
