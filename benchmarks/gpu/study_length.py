"""The GPU study's length by the rule fixed in benchmarks/hex_study_gpu_protocol.yaml.

    python benchmarks/gpu/study_length.py GPU_CHECK.json SECONDS_LEFT [ARMS]

Prints E, the largest candidate length with ARMS x 25,000 x E / S + 90 <= SECONDS_LEFT
(S: the SimCLR + HEX images/s that the device check measured), or 0 when none fits or
the check has no speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CANDIDATES = (100, 80, 60, 50, 40, 30, 25, 20, 15, 10)
IMAGES = 25_000  # tiny-imagenet-hier50's training set
OVERHEAD = 90.0  # process start, data decode, evaluation (seconds)


def study_length(img_per_s: float, seconds_left: float, arms: int = 3) -> int:
    """The rule. Example: 10,000 img/s, 400 s, 3 arms -> 50 (3 x 25k x 50 / 10k = 375 s).

    >>> study_length(10_000, 400 + 90, 3)
    50
    >>> study_length(1_000, 300, 3)
    0
    """
    for epochs in CANDIDATES:
        if arms * IMAGES * epochs / img_per_s + OVERHEAD <= seconds_left:
            return epochs
    return 0


def main() -> None:
    check, left = Path(sys.argv[1]), float(sys.argv[2])
    arms = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    try:
        speed = float(json.loads(check.read_text())["host_syncs"]["img_per_s"])
    except (OSError, KeyError, ValueError, TypeError):
        print(0)
        return
    print(study_length(speed, left, arms))


if __name__ == "__main__":
    main()
