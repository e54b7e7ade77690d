"""Wall time of the first-run job, ``hexssl demo`` (what ``make demo`` runs), and its table.

The demo runs as a user meets it: the installed ``hexssl`` command in a fresh process, so
interpreter start, imports, data generation, both trainings and their kNN evaluations all
count. Run it with nothing else on the machine. The result names the machine and records
the accuracies the demo printed, so the README's demo paragraph has a file behind it.

    python benchmarks/demo_time.py                     # writes results/demo_time.json / .md
    python benchmarks/demo_time.py --epochs 1 --out /tmp/dt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hexssl.demo import table
from hexssl.run.machine import machine_summary

RESULTS = Path(__file__).parent / "results"
RUNS = ("simclr", "simclr-hex")  # the demo's two runs, in its order


def hexssl_command() -> str:
    """The ``hexssl`` console script of the interpreter running this script."""
    exe = Path(sys.executable).parent / "hexssl"
    if not exe.is_file():
        sys.exit(f"demo_time: error: no hexssl command beside {sys.executable}; "
                 "run `make demo` once (it installs .venv) and use .venv/bin/python")  # fmt: skip
    return str(exe)


def collect(runs_dir: Path, seconds: float, epochs: int | None) -> dict[str, Any]:
    """The result record: machine, wall time, and each run's summary as the demo wrote it."""
    summaries = []
    for name in RUNS:
        path = runs_dir / name / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"the demo wrote no {path}; see its output above")
        summaries.append(json.loads(path.read_text()))
    return {
        "benchmark": "demo_time",
        "machine": machine_summary(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "epochs": epochs if epochs is not None else summaries[0].get("epochs"),
        "steps": sum(int(s.get("steps", 0)) for s in summaries),
        "wall_seconds": round(seconds, 1),
        "runs": summaries,
    }


def markdown(result: dict[str, Any]) -> str:
    minutes, secs = divmod(round(result["wall_seconds"]), 60)
    wall = f"{result['wall_seconds']:.0f} s ({minutes} min {secs:02d} s)"
    return "\n".join([
        "# `hexssl demo` wall time",
        "",
        f"{result['machine']}, {result['cores']} cores, torch {result['torch']}: "
        f"{result['steps']} steps in **{wall}**, "
        "a fresh process from start to the last line.",
        "",
        table(result["runs"]),
        "",
    ])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--epochs", type=int, default=None, help="demo epochs (default: the demo's own)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for demo_time.json / .md")
    args = ap.parse_args()
    cmd = [hexssl_command(), "demo"]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    with tempfile.TemporaryDirectory(prefix="hexssl-demo-time-") as tmp:
        start = time.perf_counter()
        subprocess.run([*cmd, "--output-dir", tmp], check=True)
        seconds = time.perf_counter() - start
        result = collect(Path(tmp), seconds, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_time.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "demo_time.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
