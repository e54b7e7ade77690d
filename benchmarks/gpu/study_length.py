"""The GPU study's length and next runs, by the rule in benchmarks/hex_study_gpu_protocol.yaml.

    python benchmarks/gpu/study_length.py GPU_CHECK.json[,FALLBACK.json] SECONDS_LEFT [RESULTS_DIR]

Prints ``EPOCHS SEEDS ARMS`` for benchmarks/gpu/session.sh, e.g. ``60 1 simclr,simclr-dcl``:

- EPOCHS: the length every earlier GPU run used (``protocol_epochs`` of the committed
  results in RESULTS_DIR); with none yet, the largest candidate with
  3 x 25,000 x E / S + 90 <= SECONDS_LEFT (S: the SimCLR + HEX images/s of the first
  check file that measured it).
- the runs not committed yet, in the protocol's order (arms 1-3 seed by seed, then arm
  4), as many as fit SECONDS_LEFT at that speed (one process each).
Prints ``0`` when nothing fits or the speed is unknown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CANDIDATES = (100, 80, 60, 50, 40, 30, 25, 20, 15, 10)
IMAGES = 25_000  # tiny-imagenet-hier50's training set
OVERHEAD = 90.0  # process start, data decode, evaluation (seconds)
SEEDS = (0, 1, 2)
ARMS = ("simclr", "simclr-hex-paper", "simclr-dcl", "simclr-hex-reference")


def study_length(img_per_s: float, seconds_left: float, arms: int = 3) -> int:
    """The length rule. Example: 10,000 img/s, 400 s + 90 s, 3 arms -> 50.

    >>> study_length(10_000, 400 + 90, 3)
    50
    >>> study_length(1_000, 300, 3)
    0
    """
    for epochs in CANDIDATES:
        if arms * IMAGES * epochs / img_per_s + OVERHEAD <= seconds_left:
            return epochs
    return 0


def runs_that_fit(img_per_s: float, seconds_left: float, epochs: int) -> int:
    """How many runs of ``epochs`` fit, sharing the GPU with no gain assumed.

    >>> runs_that_fit(15_000, 590, 60)
    5
    """
    return max(int((seconds_left - OVERHEAD) * img_per_s // (IMAGES * epochs)), 0)


def next_runs(done: set[str], n: int) -> tuple[list[int], list[str]]:
    """Up to ``n`` runs not in ``done``, in the protocol's order: arms 1-3 seed by seed,
    then arm 4. Returned as (seeds, arms) whose product is exactly those runs (the
    campaign trains the product): one seed's missing arms 1-3, or arm 4 over seeds.

    >>> next_runs({"simclr-s0", "simclr-dcl-s0", "simclr-hex-paper-s0"}, 4)
    ([1], ['simclr', 'simclr-hex-paper', 'simclr-dcl'])
    >>> next_runs({f"{a}-s{s}" for a in ARMS[:3] for s in SEEDS}, 2)
    ([0, 1], ['simclr-hex-reference'])
    >>> next_runs(set(), 0)
    ([], [])
    """
    if n <= 0:
        return [], []
    for seed in SEEDS:
        missing = [a for a in ARMS[:3] if f"{a}-s{seed}" not in done]
        if missing:
            return [seed], missing[:n]
    seeds = [s for s in SEEDS if f"{ARMS[3]}-s{s}" not in done][:n]
    return (seeds, [ARMS[3]]) if seeds else ([], [])


def measured_speed(checks: list[Path]) -> float | None:
    """SimCLR + HEX images/s from the first of ``checks`` that measured it (a check cut
    by its limit, or run without its host_syncs section, leaves a file without it)."""
    for check in checks:
        try:
            return float(json.loads(check.read_text())["host_syncs"]["img_per_s"])
        except (OSError, KeyError, ValueError, TypeError):
            continue
    return None


def plan(checks: list[Path], seconds_left: float, results: Path | None) -> str:
    speed = measured_speed(checks)
    if speed is None:
        return "0"
    done_files = sorted(results.glob("*-s[0-9].json")) if results and results.is_dir() else []
    lengths = {json.loads(p.read_text()).get("protocol_epochs") for p in done_files}
    epochs = int(lengths.pop()) if len(lengths) == 1 else study_length(speed, seconds_left)
    if epochs == 0:
        return "0"
    seeds, arms = next_runs(
        {p.stem for p in done_files}, runs_that_fit(speed, seconds_left, epochs)
    )
    return f"{epochs} {','.join(map(str, seeds))} {','.join(arms)}" if arms else "0"


def main() -> None:
    results = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    checks = [Path(p) for p in sys.argv[1].split(",")]
    print(plan(checks, float(sys.argv[2]), results))


if __name__ == "__main__":
    main()
