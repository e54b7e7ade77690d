"""The "Does HEX help?" campaign (issue 11): paired arms x seeds, resumable, one JSON per run.

The library's study runner (``hexssl.study``) plus our campaign machinery
(``benchmarks/campaign.py``: worker pool, claims, in-flight snapshots, git commits).

The protocol (arms, seeds, the full config of every run) is fixed in
``benchmarks/hex_study_protocol.yaml``. For each (seed, arm) without
``<results>/<arm>-s<seed>.json`` this trains (resuming from the run's
``checkpoints/last.ckpt`` when there is one, else from scratch in a clean directory),
evaluates, and writes the JSON, the fp16 backbone under ``weights/`` and the emergence
curves under ``curves/``. Run it again after an interruption: finished runs are skipped.

    python benchmarks/hex_study.py --git-commit --workers 2     # the campaign, 2 cores
    python benchmarks/hex_study.py --arms simclr simclr-hex-paper --seeds 0 --epochs 2 \\
        --set backbone.kwargs.width=4 data.options.max_train_samples=512   # a smoke run
    python benchmarks/hex_study.py --status                     # what is done, what is left
    python benchmarks/hex_study.py --transfer ../shared/data/cifar10-jpeg.tar.gz
    hexssl report benchmarks/results/hex_study --study --out docs/hex_study

``--epochs`` changes the length of every arm (warm-ups follow as 10 %); a smoke run must
write to other ``--runs-dir`` / ``--results`` folders than the campaign.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from campaign import (  # benchmarks/campaign.py: pool, claims, snapshots, git
    Campaign,
    campaign_status,
    format_status,
    run_campaign,
    snapshot,
    transfer,
)
from hexssl.study import load_protocol

HERE = Path(__file__).parent
PROTOCOL = HERE / "hex_study_protocol.yaml"
RESULTS = HERE / "results" / "hex_study"


def main() -> None:
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
    ap.add_argument("--git-commit", action="store_true", help="commit each run's files at once")
    ap.add_argument(
        "--workers", type=int, default=1,
        help="runs trained at once, the CPU threads split between them (2 on a 2-core CPU)",
    )  # fmt: skip
    ap.add_argument(
        "--snapshot", action="store_true",
        help="copy unfinished runs' checkpoints to <results>/inflight/ (commit before a session "
        "ends; the next session resumes from them)",
    )  # fmt: skip
    ap.add_argument(
        "--status", action="store_true",
        help="print each run's state (done / training / resumable / snapshot / todo), its "
        "epoch and the training time left at the speeds last logged; train nothing",
    )  # fmt: skip
    ap.add_argument(
        "--transfer", nargs="+", default=None, metavar="DATA",
        help="kNN of every released backbone on these ImageFolder datasets (no training)",
    )  # fmt: skip
    ap.add_argument("--transfer-max-samples", type=int, default=None, help="cap per split (tests)")
    args = ap.parse_args()
    if args.transfer:
        missing = [d for d in args.transfer if not Path(d).exists()]
        if missing:
            raise SystemExit(f"transfer data not found: {missing}")
        transfer(args.results, args.transfer, max_samples=args.transfer_max_samples,
                 git_commit=args.git_commit)  # fmt: skip
        return
    protocol = load_protocol(args.protocol, args.epochs)
    campaign = Campaign(
        protocol=protocol,
        runs_dir=args.runs_dir,
        results_dir=args.results,
        arms=args.arms or list(protocol.arms),
        seeds=args.seeds if args.seeds is not None else protocol.seeds,
        overrides=list(args.set),
        git_commit=args.git_commit,
    )
    for arm in campaign.arms:
        if arm not in protocol.arms:
            raise SystemExit(f"unknown arm {arm!r}; the protocol has {list(protocol.arms)}")
    if args.status:
        batch = int(protocol.base["data"]["batch_size"])
        print(format_status(campaign_status(campaign), protocol.epochs, batch), end="")
        return
    if args.snapshot:
        snapshot(campaign)
        return
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    run_campaign(campaign, args.workers)


if __name__ == "__main__":
    main()
