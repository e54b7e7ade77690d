"""The HEX study's released backbones in safetensors give what their .pt files gave.

Issue 34 converted the 18 backbones in ``benchmarks/results/hex_study/weights`` from fp16
pickles (``NAME.pt``) to ``NAME.safetensors`` and removed the ``.pt`` files. This script
reads each old ``.pt`` (and its old JSON) back from git history, at ``PT_COMMIT``, the last
commit that held them, and checks for each backbone that

1. the ``.safetensors`` holds the same tensors: names, dtypes, shapes and values,
   bit for bit;
2. both files, evaluated as ``hexssl knn`` evaluates released weights (their own eval
   transform, the study's Tiny-ImageNet subset), give bit-identical features and the
   same kNN accuracies (k = 20, T = 0.07) on a seeded random subset of each split.

The data is passed explicitly (``--data``); without it only check 1 runs. Results go to
``benchmarks/results/released_weights_check.json``; the script exits 1 if any check fails.

    python benchmarks/check_released_weights.py --data ../shared/data/tiny-imagenet-hier50.tar.gz
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path("benchmarks/results/hex_study/weights")
PT_COMMIT = "1666848e9f85949d2716ef335fb5a7998ede11ce"  # the last commit with the .pt files
OUT = ROOT / "benchmarks" / "results" / "released_weights_check.json"


def git_file(path: Path, commit: str = PT_COMMIT) -> bytes | None:
    """A file's bytes at ``commit`` (None outside a git checkout or without that commit)."""
    try:
        res = subprocess.run(
            ["git", "show", f"{commit}:{path.as_posix()}"], cwd=ROOT, capture_output=True
        )
    except OSError:  # no git
        return None
    return res.stdout if res.returncode == 0 else None


def old_state(name: str) -> dict[str, torch.Tensor] | None:
    """The tensors of ``NAME.pt`` as committed at ``PT_COMMIT`` (None when unavailable)."""
    raw = git_file(WEIGHTS / f"{name}.pt")
    if raw is None:
        return None
    state: dict[str, torch.Tensor] = torch.load(io.BytesIO(raw), weights_only=True)
    return state


def released_names() -> list[str]:
    """The names of the released backbones (``NAME.safetensors``), sorted."""
    return sorted(p.stem for p in (ROOT / WEIGHTS).glob("*.safetensors"))


def tensor_differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Every way two state dicts differ (names, dtypes, shapes, values); empty if none."""
    out = [f"only in one: {k}" for k in sorted(set(a) ^ set(b))]
    for k in sorted(set(a) & set(b)):
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
            was, now = f"{a[k].dtype} {tuple(a[k].shape)}", f"{b[k].dtype} {tuple(b[k].shape)}"
            out.append(f"{k}: {was} vs {now}")
        elif not torch.equal(a[k], b[k]):
            out.append(f"{k}: values differ")
    return out


def knn_both(
    name: str, old_dir: Path, data: Path, n: int | None, shared: dict[str, Any]
) -> dict[str, Any]:
    """kNN of the old .pt and of the .safetensors on the same data subset."""
    from hexssl.run.eval_jobs import encoder_features, knn_summary, open_encoder
    from hexssl.study.evaluation import _limit

    over = [f"data.root={data}"]
    feats, knn = {}, {}
    files = {"pt": old_dir / f"{name}.pt", "safetensors": ROOT / WEIGHTS / f"{name}.safetensors"}
    for kind, path in files.items():
        first = not shared
        enc = open_encoder(path, over, shared=shared)
        if first:  # the data module is shared by every backbone at this size: cut it once
            _limit(enc.dm, n, 0)
        train, val = encoder_features(enc)
        feats[kind] = (train[0], val[0])
        knn[kind] = knn_summary(train, val, [20], [0.07])
    same = all(torch.equal(x, y) for x, y in zip(feats["pt"], feats["safetensors"]))
    return {
        "features_identical": same,
        "knn_identical": knn["pt"] == knn["safetensors"],
        "knn_pt": knn["pt"],
        "knn_safetensors": knn["safetensors"],
        "n_train": int(feats["pt"][0].shape[0]),
        "n_val": int(feats["pt"][1].shape[0]),
    }


def line(row: dict[str, Any]) -> str:
    """One backbone's checks and kNN top-1 (class / superclass) for each file."""
    flags = [k for k in ("bit_identical", "features_identical", "knn_identical") if k in row]
    text = ", ".join(f"{k} {row[k]}" for k in flags)
    for kind in ("pt", "safetensors"):
        if f"knn_{kind}" in row:
            knn = row[f"knn_{kind}"]
            text += f"; kNN {kind} {knn['knn_class_top1']:.2f} / {knn['knn_super_top1']:.2f}"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="the study's data (.tar.gz)")
    ap.add_argument(
        "--max-samples", type=int, default=500, help="images per split (seeded); 0: all"
    )
    ap.add_argument("--only", nargs="+", default=None, help="these backbones (default: all 18)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    names = released_names()
    if args.only:
        names = [n for n in names if n in args.only]
    if args.data is not None and not args.data.exists():
        ap.error(f"--data {args.data}: no such file")
    report: dict[str, Any] = {"pt_commit": PT_COMMIT, "backbones": {}, "data": None}
    if args.data is not None:
        report["data"] = {
            "root": args.data.name,
            "max_samples": args.max_samples,
            "k": 20,
            "t": 0.07,
        }
    ok = len(names) == (len(args.only) if args.only else 18)
    shared: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_dir = Path(tmp)
        for name in names:
            state = old_state(name)
            meta = git_file(WEIGHTS / f"{name}.json")
            if state is None or meta is None:
                print(f"{name}: no .pt at {PT_COMMIT[:12]} (a shallow clone?)", file=sys.stderr)
                return 2
            diff = tensor_differences(state, load_file(ROOT / WEIGHTS / f"{name}.safetensors"))
            row: dict[str, Any] = {"tensors": len(state), "bit_identical": not diff}
            row["differences"] = diff[:5]
            if args.data is not None:
                torch.save(state, old_dir / f"{name}.pt")
                (old_dir / f"{name}.json").write_bytes(meta)
                n = args.max_samples or None
                row.update(knn_both(name, old_dir, args.data, n, shared))
            checks = ("bit_identical", "features_identical", "knn_identical")
            ok &= all(row.get(c, True) for c in checks)
            report["backbones"][name] = row
            print(f"{name}: {line(row)}", flush=True)
    report["all_identical"] = ok
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'all identical' if ok else 'DIFFERENCES FOUND'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
