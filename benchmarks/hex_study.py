"""The "Does HEX help?" campaign (issue 11): a thin caller of ``hexssl study``.

The study itself (protocol fixed in the results folder, runs in their own processes,
resume, status, report) is the library's: this script runs
``hexssl study benchmarks/hex_study_protocol.yaml`` with our folders, and adds our
campaign tooling from ``benchmarks/campaign.py``: in-flight snapshots that outlive a
session, and a git commit of each finished run's files.

    python benchmarks/hex_study.py --git-commit --workers 2     # the campaign, 2 cores
    python benchmarks/hex_study.py --arms simclr simclr-hex-paper --seeds 0 --epochs 2 \\
        --set backbone.kwargs.width=4 data.options.max_train_samples=512 \\
        --runs-dir runs/smoke --results runs/smoke/results      # a smoke run
    python benchmarks/hex_study.py --status                     # what is done, what is left
    python benchmarks/hex_study.py --transfer ../shared/data/cifar10-jpeg.tar.gz
    hexssl study report benchmarks/results/hex_study --out docs/hex_study

``--epochs`` changes the length of every arm (warm-ups follow as 10 %); it changes the
protocol, so a smoke run must write to other ``--runs-dir`` / ``--results`` folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from campaign import (  # benchmarks/campaign.py: snapshots, git, transfer
    commit_new_results,
    restore_inflight,
    snapshot,
    transfer,
)
from hexssl.cli import main as hexssl
from hexssl.study import load_protocol, schedule

HERE = Path(__file__).parent
PROTOCOL = HERE / "hex_study_protocol.yaml"
RESULTS = HERE / "results" / "hex_study"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--protocol", type=Path, default=PROTOCOL)
    ap.add_argument("--arms", nargs="+", default=None, help="default: every arm of the protocol")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the protocol's")
    ap.add_argument("--epochs", type=int, default=None, help="override the length (smoke tests)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/hex_study"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (smoke tests)"
    )
    ap.add_argument("--git-commit", action="store_true", help="commit each finished run's files")
    ap.add_argument("--workers", type=int, default=1, help="runs at once (hexssl study --workers)")
    ap.add_argument(
        "--snapshot", action="store_true",
        help="copy unfinished runs' checkpoints to <results>/inflight/ (commit before a session "
        "ends; the next session resumes from them)",
    )  # fmt: skip
    ap.add_argument("--status", action="store_true", help="hexssl study --status")
    ap.add_argument(
        "--transfer", nargs="+", default=None, metavar="DATA",
        help="kNN of every released backbone on these ImageFolder datasets (no training)",
    )  # fmt: skip
    ap.add_argument("--transfer-max-samples", type=int, default=None, help="cap per split (tests)")
    return ap.parse_args(argv)


def study_argv(args: argparse.Namespace) -> list[str]:
    """The ``hexssl study`` command line for these arguments."""
    argv = ["study", str(args.protocol), "--results", str(args.results),
            "--runs-dir", str(args.runs_dir), "--workers", str(args.workers)]  # fmt: skip
    argv += ["--arms", *args.arms] if args.arms else []
    argv += ["--seeds", *map(str, args.seeds)] if args.seeds is not None else []
    overrides = [*args.set, *([f"study.epochs={args.epochs}"] if args.epochs else [])]
    return argv + (["--set", *overrides] if overrides else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.transfer:
        missing = [d for d in args.transfer if not Path(d).exists()]
        if missing:
            raise SystemExit(f"transfer data not found: {missing}")
        transfer(args.results, args.transfer, max_samples=args.transfer_max_samples,
                 git_commit=args.git_commit)  # fmt: skip
        return 0
    if args.status:
        return hexssl([*study_argv(args), "--status"])
    if args.snapshot:
        protocol = load_protocol(args.protocol)
        runs = schedule(protocol, args.arms or list(protocol.arms), args.seeds or protocol.seeds)
        snapshot(args.results, args.runs_dir, runs, args.git_commit)
        return 0
    restore_inflight(args.results, args.runs_dir)
    before = {p.stem for p in args.results.glob("*.json")}
    code = hexssl(study_argv(args))
    if args.git_commit:
        commit_new_results(args.results, before, f" ({args.epochs} epochs)" if args.epochs else "")
    return code


if __name__ == "__main__":
    sys.exit(main())
