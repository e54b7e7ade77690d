"""First real-data comparison: SimCLR vs SimCLR + HEX (paper) vs SimCLR + HEX (reference).

Data: ``../shared/data/tiny-imagenet-hier50.tar.gz`` (50 classes in 10 superclasses),
downsampled to 32 px. Same CPU preset, seed and epochs for the three runs; HEX uses the
spec defaults (q = 0.99, beta = 1, tau_plus = 0.1, lambda = 1), with the warm-up scaled
to the short schedule (spec: 10 of 100+ epochs; here ``--hex-warmup`` epochs).

Each run is skipped when its ``summary.json`` exists, so the script can be re-run after
an interruption. Results go to ``benchmarks/results/first_comparison.{json,md}`` and PNG
plots next to them.

    python benchmarks/first_comparison.py [--epochs 8] [--width 16] [--out runs/first_comparison]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from hexssl.config import load_config
from hexssl.eval.hierarchy import hierarchy_report, per_group_effective_rank
from hexssl.eval.linear import linear_eval
from hexssl.eval.report import compare_runs
from hexssl.run.eval_jobs import frozen_features, knn_summary
from hexssl.run.runs import open_run
from hexssl.run.train import pretrain

RESULTS = Path(__file__).parent / "results"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-hier50.tar.gz"
RUNS = {
    "simclr": ["hex.enabled=false"],
    "simclr-hex-paper": ["hex.enabled=true", "hex.variant=paper"],
    "simclr-hex-reference": ["hex.enabled=true", "hex.variant=reference"],
}


def overrides(args: argparse.Namespace, name: str) -> list[str]:
    """The shared CPU preset plus the run's HEX switch."""
    return [
        f"name={name}",
        f"output_dir={args.out}",
        "seed=0",
        "method.name=simclr",
        "method.params={temperature: 0.1, proj_hidden: 1024, proj_out: 128}",
        f"backbone.kwargs={{stem: cifar, width: {args.width}}}",
        "data.dataset=imagefolder",
        f"data.root={args.data}",
        "data.image_size=32",
        "data.options={image_size: 32, max_train_samples: %s}"
        % ("null" if args.max_train_samples is None else args.max_train_samples),
        f"data.batch_size={args.batch_size}",
        "optim.name=lars",
        "optim.lr=0.3",
        "optim.weight_decay=1.0e-4",
        "optim.warmup_epochs=1",
        f"trainer.max_epochs={args.epochs}",
        "trainer.accelerator=cpu",
        "trainer.precision=32",
        "trainer.log_every_n_steps=10",
        "trainer.checkpoint_every_n_steps=100",
        "eval.purity_every_n_steps=25",
        "eval.purity_batch_size=512",
        "hex.q=0.99",
        "hex.beta=1.0",
        "hex.tau_plus=0.1",
        "hex.lambda_local=1.0",
        f"hex.warmup_epochs={args.hex_warmup}",
        *RUNS[name],
    ]


def train_all(args: argparse.Namespace) -> None:
    for name in RUNS:
        if (args.out / name / "summary.json").is_file():
            print(f"[skip] {name}: already trained")
            continue
        resume = ["resume=auto"] if (args.out / name / "checkpoints/last.ckpt").is_file() else []
        pretrain(load_config(None, overrides(args, name) + resume))


def evaluate(run_dir: Path, linear_epochs: int) -> dict[str, Any]:
    """kNN, linear probe, neighbour purity and per-superclass effective rank."""
    _, method, dm = open_run(run_dir, ["eval.purity_every_n_steps=0"])
    with torch.no_grad():
        train, val = frozen_features(method, dm, run_dir, "last")
        z_val = torch.cat([method.embed(method.eval_view(b[0])) for b in dm.val_dataloader()])
    out: dict[str, Any] = knn_summary(train, val, [20], [0.07])
    out = {k: v for k, v in out.items() if k.endswith(("_top1", "_top5")) and "_T" not in k}
    lin = linear_eval(
        train[0], train[1], val[0], val[1], fractions=(1.0, 0.1), seed=0, epochs=linear_epochs
    )
    out.update({f"linear_class_{k}": v for k, v in lin.items() if k.endswith(("top1", "top5"))})
    purity = hierarchy_report(z_val, labels=val[1], superlabels=val[2], batch_size=512)
    out.update({f"z_{k}": v for k, v in purity.items() if k.startswith(("purity", "eps", "neigh"))})
    erank = per_group_effective_rank(val[0], val[2])
    out["erank_global"] = erank.pop("global")
    out["erank_per_superclass"] = erank
    out["erank_superclass_mean"] = sum(erank.values()) / len(erank)
    return out


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    cols = [
        ("kNN class@1", "knn_class_top1"),
        ("kNN super@1", "knn_super_top1"),
        ("linear@1 (100%)", "linear_class_100pct_top1"),
        ("linear@1 (10%)", "linear_class_10pct_top1"),
        ("purity class (chance)", "z_purity_class"),
        ("purity super", "z_purity_super"),
        ("erank global", "erank_global"),
        ("erank / superclass", "erank_superclass_mean"),
        ("final eps", "train/hex/eps"),
        ("neigh. frac", "train/hex/neighbour_frac"),
        ("train s", "seconds"),
    ]
    lines = [
        f"Tiny-ImageNet-hier50 at 32 px, SimCLR, ResNet-18 width {args.width}, batch "
        f"{args.batch_size}, {args.epochs} epochs, one seed (0), CPU. HEX: spec defaults, "
        f"warm-up {args.hex_warmup} epoch(s).",
        "",
        "| run | " + " | ".join(c for c, _ in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name, r in results.items():
        cells = []
        for _, key in cols:
            v = r.get(key)
            if key == "z_purity_class" and v is not None:
                cells.append(f"{v:.3f} ({r.get('z_purity_class_chance', float('nan')):.3f})")
            else:
                cells.append("n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=16, help="ResNet-18 base width")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--hex-warmup", type=float, default=1.0, help="HEX warm-up epochs")
    ap.add_argument("--linear-epochs", type=int, default=100)
    ap.add_argument("--max-train-samples", type=int, default=None, help="smoke tests only")
    ap.add_argument("--data", type=Path, default=ARCHIVE)
    ap.add_argument("--out", type=Path, default=Path("runs/first_comparison"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"data not found: {args.data} (the shared Tiny-ImageNet archive)")
    train_all(args)
    results = {}
    for name in RUNS:
        summary = json.loads((args.out / name / "summary.json").read_text())
        results[name] = {**summary, **evaluate(args.out / name, args.linear_epochs)}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "first_comparison.json").write_text(json.dumps(results, indent=2))
    (args.results / "first_comparison.md").write_text(markdown(results, args))
    compare_runs([args.out / n for n in RUNS], args.results / "first_comparison_plots")
    print(markdown(results, args))


if __name__ == "__main__":
    main()
