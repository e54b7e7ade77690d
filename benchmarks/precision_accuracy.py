"""Does bf16 mixed precision keep accuracy? The CPU preset in fp32 against bf16 (issue 8).

Runs the SimCLR tiny-imagenet-hier50 CPU preset at its own length for each seed and
speed setting, then scores the final backbone with kNN (class and superclass, k = 20,
T = 0.07) and a linear probe on 100 % of the labels. A run is skipped when its
``summary.json`` exists, so the script can be re-run after an interruption.

Settings (``--settings``):
    fp32          trainer.precision=32, NCHW, eager (the old default)
    fp32-compile  as fp32, plus trainer.compile=true
    bf16          trainer.precision=bf16-mixed, channels_last
    bf16-compile  as bf16, plus trainer.compile=true

bf16 only pays on CPUs with AMX or AVX512-BF16; elsewhere it is emulated and slow.

    python benchmarks/precision_accuracy.py [--seeds 0 1] [--settings fp32 bf16]
    python benchmarks/precision_accuracy.py --seeds 0 --settings fp32 --results /tmp/p \
        --out /tmp/p/runs --set trainer.max_epochs=1 data.options.max_train_samples=64  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from hexssl.config import load_config
from hexssl.eval.linear import linear_eval
from hexssl.run.eval_jobs import frozen_features
from hexssl.run.machine import machine_summary
from hexssl.run.runs import open_run
from hexssl.run.train import pretrain

RESULTS = Path(__file__).parent / "results"
PRESET = ["configs/simclr.yaml", "configs/data/tiny-imagenet-hier50-cpu.yaml"]
# The study's copy of the preset's data, beside the repository (--set data.root=... to change)
SHARED_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-hier50.tar.gz"
)
SETTINGS = {
    "fp32": ["trainer.precision=32", "trainer.channels_last=false", "trainer.compile=false"],
    "bf16": ["trainer.precision=bf16-mixed", "trainer.channels_last=true", "trainer.compile=false"],
    "fp32-compile": ["trainer.precision=32", "trainer.channels_last=false", "trainer.compile=true"],
    "bf16-compile": [
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.compile=true",
    ],
}
METRICS = ("knn_class_top1", "knn_super_top1", "linear_top1", "img_per_s")


def train_one(args: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    """Train (or reuse) one run and return its scores."""
    name = f"{setting}-s{seed}"
    run = args.out / name
    if not (run / "summary.json").is_file():
        extra = [f"name={name}", f"output_dir={args.out}", f"seed={seed}", "resume=auto"]
        data = f"data.root={SHARED_DATA}"
        overrides = [*SETTINGS[setting], *extra, data, "trainer.progress_bar=false", *args.set]
        cfg = load_config(args.preset, overrides)
        pretrain(cfg)
    summary = json.loads((run / "summary.json").read_text())
    return {
        "setting": setting,
        "seed": seed,
        "seconds": summary["seconds"],
        "steps": summary["steps"],
        "img_per_s": summary["steps"] * summary["global_batch"] / summary["seconds"],
        "knn_class_top1": summary.get("knn_class_top1"),
        "knn_super_top1": summary.get("knn_super_top1"),
        "linear_top1": linear_top1(run, seed),
    }


def linear_top1(run: Path, seed: int) -> float:
    """Linear probe top-1 (100 % of the labels) on the run's final backbone."""
    _, method, dm = open_run(run, ["eval.purity_every_n_steps=0"], "last")
    with torch.no_grad():
        train, val = frozen_features(method, dm)
    res = linear_eval(train[0], train[1], val[0], val[1], fractions=(1.0,), seed=seed)
    return float(next(v for k, v in res.items() if k.endswith("top1")))


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """mean ± std over seeds of every metric, per setting."""
    out: dict[str, dict[str, str]] = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == setting]
        out[setting] = {}
        for m in METRICS:
            vals = [float(r[m]) for r in sel]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            out[setting][m] = f"{statistics.mean(vals):.2f} ± {sd:.2f}"
    return out


def markdown(res: dict[str, Any]) -> str:
    """The results file's table, rendered from what the JSON records."""
    rows, table = res["rows"], res["summary"]
    lines = [
        f"Preset `{res['preset']}` at its own length on {res['machine']}; mean ± std over seeds "
        f"{sorted({r['seed'] for r in rows})}. img/s is the whole run's average "
        "(training steps x batch / wall time, including validation and the first-step "
        "start-up), measured while other work shared the 2 cores unless noted.",
        "",
        "| setting | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    lines += [f"| {s} | " + " | ".join(v[m] for m in METRICS) + " |" for s, v in table.items()]
    lines += ["", "Per run:", "", "| run | " + " | ".join(METRICS) + " |"]
    lines.append("|---|" + "---|" * len(METRICS))
    for r in rows:
        vals = " | ".join(f"{float(r[m]):.2f}" for m in METRICS)
        lines.append(f"| {r['setting']}-s{r['seed']} | {vals} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", nargs="+", default=PRESET, help="the CPU preset files to compare")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--settings", nargs="+", default=["fp32", "bf16"], choices=sorted(SETTINGS))
    ap.add_argument("--out", type=Path, default=Path("runs/precision"), help="run directories")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results folder")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (smoke tests)"
    )
    args = ap.parse_args()
    rows = [train_one(args, s, seed) for seed in args.seeds for s in args.settings]
    args.results.mkdir(parents=True, exist_ok=True)
    res = {
        "preset": " ".join(args.preset),
        "machine": machine_summary(),
        "torch": torch.__version__,
        "rows": rows,
        "summary": summarise(rows),
    }
    (args.results / "precision_accuracy.json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    (args.results / "precision_accuracy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
