"""Forward+backward time and saved-activation memory of InfoNCE vs HEX on CPU.

Times the loss alone (embeddings in, gradient out) for SimCLR-style 2B x 2B matrices,
D = 128, adaptive threshold; counts the aten operators of a forward + backward (on a GPU
each is a kernel launch) and the (2B)^2-sized tensors that autograd keeps for backward.
Targets (issue 8):
HEX <= 1.3x InfoNCE at every size, op count <= 2x, no extra (2B)^2 float tensors.

    python benchmarks/loss_speed.py [--sizes 256 512 1024 4096] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.losses.memory import saved_square_tensors

RESULTS = Path(__file__).parent / "results"
LOSSES = {
    "infonce": lambda: InfoNCE(0.1),
    "hex_paper": lambda: InfoNCE(0.1, HEXDenominator("adaptive", beta=1.0, tau_plus=0.1)),
    "hex_reference": lambda: InfoNCE(0.1, HEXDenominator("adaptive", variant="reference")),
}


def time_once(fn: InfoNCE, z0: torch.Tensor, z1: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(z0, z1).backward()
    elapsed = time.perf_counter() - start
    z0.grad = z1.grad = None
    return elapsed


def median_time(fn: InfoNCE, b: int, repeats: int) -> float:
    z0 = torch.randn(b, 128, requires_grad=True)
    z1 = torch.randn(b, 128, requires_grad=True)
    for _ in range(3):  # warm-up
        time_once(fn, z0, z1)
    return statistics.median(time_once(fn, z0, z1) for _ in range(repeats))


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched (each one a kernel launch on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.count += 1
        return func(*args, **(kwargs or {}))


def op_count(fn: InfoNCE, b: int) -> int:
    """aten operators of one forward + backward."""
    z0 = torch.randn(b, 128, requires_grad=True)
    z1 = torch.randn(b, 128, requires_grad=True)
    fn(z0, z1).backward()  # warm-up: first-call paths are not counted
    with OpCounter() as counter:
        fn(z0, z1).backward()
    return counter.count


def run(sizes: list[int], repeats: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    rows = []
    for n in sizes:
        b = n // 2
        times = {name: median_time(make(), b, repeats) for name, make in LOSSES.items()}
        mem = {name: saved_square_tensors(make(), b) for name, make in LOSSES.items()}
        ops = {name: op_count(make(), b) for name, make in LOSSES.items()}
        rows.append(
            dict(
                two_b=n,
                seconds=times,
                saved_square=mem,
                ops=ops,
                ratio={k: times[k] / times["infonce"] for k in times},
            )
        )
        print(f"2B={n}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()))
    return dict(
        device="cpu",
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        d=128,
        rows=rows,
    )


def markdown(res: dict) -> str:
    lines = [
        f"Loss forward+backward, CPU ({res['threads']} threads, torch {res['torch']}), D=128, "
        "median ms; ratio = HEX / InfoNCE.",
        "",
        "| 2B | InfoNCE ms | HEX paper ms (ratio) | HEX reference ms (ratio) "
        "| aten ops fwd+bwd InfoNCE / paper / reference "
        "| saved (2B)^2 tensors InfoNCE / paper / reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        s, q = r["seconds"], r["ratio"]
        mem = {k: f"{v['float']}f+{v['mask']}m" for k, v in r["saved_square"].items()}

        lines.append(
            f"| {r['two_b']} | {s['infonce'] * 1e3:.2f} | {s['hex_paper'] * 1e3:.2f} "
            f"({q['hex_paper']:.2f}x) | {s['hex_reference'] * 1e3:.2f} ({q['hex_reference']:.2f}x)"
            f" | {r['ops']['infonce']} / {r['ops']['hex_paper']} / {r['ops']['hex_reference']}"
            f" | {mem['infonce']} / {mem['hex_paper']} / {mem['hex_reference']} |"
        )
    lines.append("")
    lines.append(
        "Saved tensors: distinct (2B, 2B) tensors kept for backward; f = float, "
        "m = boolean/integer mask. The sizes are chosen so that D != 2B."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[256, 512, 1024, 4096],
        help="values of 2B (rows of the similarity matrix)",
    )
    ap.add_argument("--repeats", type=int, default=15, help="timed repetitions per point")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args()
    res = run(args.sizes, args.repeats, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loss_speed.json").write_text(json.dumps(res, indent=2))
    (args.out / "loss_speed.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
