"""Forward+backward time and saved-activation memory of InfoNCE, HEX and its relatives.

Times the loss alone (embeddings in, gradient out) for SimCLR-style 2B x 2B matrices,
D = 128 (HEX: adaptive threshold); counts the aten operators of a forward + backward (on
a GPU each is a kernel launch) and the (2B)^2-sized tensors that autograd keeps for
backward. The losses of one size are timed alternately (one call of each per repeat),
so that a machine whose speed drifts favours none. HEX is timed as a training step runs
it between logging steps, without its statistics (``record_stats = False``); the
``hex_paper_logged`` entry is a logging step's call, statistics included. Targets: HEX
(issue 8) and each relative, decoupled / DCLW / debiased / hard (issue 24), <= 1.3x
InfoNCE at every size; HEX's op count <= 2x; no extra (2B)^2 float tensors.

    python benchmarks/loss_speed.py [--sizes 256 512 1024 4096] [--repeats 15] [--min-seconds 10]
    python benchmarks/loss_speed.py --device cuda --sizes 256 1024 8192   # CUDA events
    python benchmarks/loss_speed.py --losses infonce decoupled debiased hard
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import hexssl.losses
from hexssl.losses import InfoNCE
from hexssl.losses.memory import saved_square_tensors
from hexssl.run.hostsync import AtenOpCounter
from hexssl.run.machine import machine_summary

RESULTS = Path(__file__).parent / "results"
# every size of every compiled entry is a graph of the one InfoNCE.forward: more than
# torch's default of 8, after which it would run eagerly and time the wrong thing
torch._dynamo.config.recompile_limit = 64


def hex_loss(stats: bool = False, L: Any = hexssl.losses, **kwargs: Any) -> torch.nn.Module:
    """InfoNCE with a HEX denominator from the losses package ``L``; ``stats``: record the
    statistics (a logging step's call)."""
    den = L.HEXDenominator("adaptive", **kwargs)
    den.record_stats = stats
    return L.InfoNCE(0.1, den)


def loss_table(L: Any = hexssl.losses) -> dict[str, Callable[[], torch.nn.Module]]:
    """name -> a new loss module, built from the losses package ``L`` (this tree's by
    default; ``loss_ab.py`` passes another tree's). The first is the ratios' baseline."""
    return {
        "infonce": lambda: L.InfoNCE(0.1),
        "hex_paper": lambda: hex_loss(L=L, beta=1.0, tau_plus=0.1),
        "hex_paper_logged": lambda: hex_loss(True, L, beta=1.0, tau_plus=0.1),
        "hex_reference": lambda: hex_loss(L=L, variant="reference"),
        "decoupled": lambda: L.InfoNCE(0.1, L.DecoupledDenominator()),
        "decoupled_weighted": lambda: L.InfoNCE(0.1, L.DecoupledDenominator(sigma=0.5)),
        "debiased": lambda: L.InfoNCE(0.1, L.DebiasedDenominator(tau_plus=0.1)),
        "hard": lambda: L.InfoNCE(0.1, L.HardNegativeDenominator(beta=1.0, tau_plus=0.1)),
        "hard_beta_0.5": lambda: L.InfoNCE(0.1, L.HardNegativeDenominator(beta=0.5, tau_plus=0.1)),
    }


LOSSES = loss_table()
# Compiled on first use per shape: timed on GPUs only (on a 2-core CPU compilation alone
# takes minutes). The fused HEX path of issue 22: same loss, fewer kernel launches.
GPU_ONLY = {
    "hex_paper_fused": lambda: hex_loss(fused=True),
    # the whole loss compiled (threshold, pairing, logsumexp and all): one graph per shape
    "hex_paper_compiled": lambda: torch.compile(hex_loss(beta=1.0, tau_plus=0.1), dynamic=False),
    "infonce_compiled": lambda: torch.compile(InfoNCE(0.1), dynamic=False),
}


def time_once(fn: InfoNCE, z0: torch.Tensor, z1: torch.Tensor) -> float:
    """Seconds of one forward + backward: wall time on the CPU, CUDA events on a GPU
    (the device's own clock; the host returns long before the kernels finish)."""
    if z0.is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(z0, z1).backward()
        end.record()
        torch.cuda.synchronize()
        elapsed = start.elapsed_time(end) / 1e3
    else:
        t0 = time.perf_counter()
        fn(z0, z1).backward()
        elapsed = time.perf_counter() - t0
    z0.grad = z1.grad = None
    return elapsed


def median_time(fn: InfoNCE, b: int, repeats: int, device: str = "cpu") -> float:
    """Median seconds of one loss's forward + backward (3 warm-up calls first)."""
    return median_times({"loss": fn}, b, repeats, device)["loss"]


def median_times(
    fns: dict[str, InfoNCE], b: int, repeats: int, device: str = "cpu", min_seconds: float = 0.0
) -> dict[str, float]:
    """Median seconds per loss, the losses called alternately (one of each per round).

    ``repeats`` rounds at least, more until the timed calls add up to ``min_seconds``:
    a 1 ms loss needs hundreds of calls for a median that holds to a few per cent.
    """
    times = alternated_times(fns, b, repeats, device, min_seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def paired_ratio_spread(times: dict[str, list[float]], base: str = "infonce") -> dict[str, list]:
    """Per loss, the 25th and 75th percentiles of its time over ``base``'s in the same
    round: how far one size's ratio moves between rounds (drift cancels in a pair)."""
    out = {}
    for name, t in times.items():
        pairs = [x / y for x, y in zip(t, times[base], strict=True)]
        q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
        out[name] = [q[0], q[2]]
    return out


def alternated_times(
    fns: dict[str, InfoNCE], b: int, repeats: int, device: str = "cpu", min_seconds: float = 0.0,
    shuffle: random.Random | None = None,
) -> dict[str, list[float]]:  # fmt: skip
    """Seconds of every timed call per loss, round by round (see :func:`median_times`);
    with ``shuffle``, the calls of each round in an order it draws (no loss always
    follows the same one)."""
    fns = {name: fn.to(device) for name, fn in fns.items()}
    z0 = torch.randn(b, 128, device=device, requires_grad=True)
    z1 = torch.randn(b, 128, device=device, requires_grad=True)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(3):  # warm-up
        for fn in fns.values():
            time_once(fn, z0, z1)
    spent, rounds = 0.0, 0
    order = list(fns)
    while rounds < repeats or spent < min_seconds:
        if shuffle is not None:
            shuffle.shuffle(order)
        for name in order:
            times[name].append(time_once(fns[name], z0, z1))
            spent += times[name][-1]
        rounds += 1
    return times


def op_count(fn: InfoNCE, b: int, device: str = "cpu") -> int:
    """aten operators of one forward + backward."""
    fn = fn.to(device)
    z0 = torch.randn(b, 128, device=device, requires_grad=True)
    z1 = torch.randn(b, 128, device=device, requires_grad=True)
    fn(z0, z1).backward()  # warm-up: first-call paths are not counted
    with AtenOpCounter() as counter:
        fn(z0, z1).backward()
    return counter.total


def run(
    sizes: list[int], repeats: int, threads: int | None, names: list[str], device: str = "cpu",
    min_seconds: float = 0.0,
) -> dict:  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    losses = {name: LOSSES[name] for name in names} | (GPU_ONLY if device == "cuda" else {})
    rows = []
    for n in sizes:
        b = n // 2
        made = {name: make() for name, make in losses.items()}
        calls = alternated_times(made, b, repeats, device, min_seconds)
        times = {name: statistics.median(t) for name, t in calls.items()}
        # counted eagerly (on the CPU for memory): not for the compiled GPU-only entries
        counted = {name: make for name, make in losses.items() if name not in GPU_ONLY}
        mem = {name: saved_square_tensors(make(), b) for name, make in counted.items()}
        ops = {name: op_count(make(), b, device) for name, make in counted.items()}
        rows.append(
            dict(
                two_b=n,
                seconds=times,
                saved_square=mem,
                ops=ops,
                ratio={k: times[k] / times["infonce"] for k in times},
                ratio_iqr=paired_ratio_spread(calls),
                rounds=len(calls["infonce"]),
            )
        )
        print(f"2B={n}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()))
    return dict(
        device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=machine_summary() if device == "cpu" else platform.machine(),
        d=128,
        rows=rows,
    )


def markdown(res: dict) -> str:
    names = list(res["rows"][0]["seconds"])
    others = [k for k in names if k != "infonce"]
    lines = [
        f"Loss forward+backward, {res['device']} ({res['machine']}; {res['threads']} threads, "
        f"torch {res['torch']}), D=128, "
        "median ms; ratio = loss / InfoNCE (medians), then the 25th-75th percentiles of "
        "loss / InfoNCE within a round (the spread between rounds).",
        "",
        "| 2B | InfoNCE ms | " + " | ".join(f"{k} ms (ratio)" for k in others) + " |",
        "|---" * (2 + len(others)) + "|",
    ]
    for r in res["rows"]:
        s, q = r["seconds"], r["ratio"]
        iqr = r["ratio_iqr"]
        cells = [f"{s[k] * 1e3:.2f} ({q[k]:.2f}x; {iqr[k][0]:.2f}-{iqr[k][1]:.2f})" for k in others]
        lines.append(f"| {r['two_b']} | {s['infonce'] * 1e3:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| 2B | loss | aten ops fwd+bwd | saved (2B)^2 tensors |",
        "|---|---|---|---|",
    ]
    for r in res["rows"]:
        for k in names:
            if k not in r["ops"]:  # a compiled GPU-only entry: timed, not counted
                continue
            mem = r["saved_square"][k]
            lines.append(f"| {r['two_b']} | {k} | {r['ops'][k]} | {mem['float']}f+{mem['mask']}m |")
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
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds per size, at least")
    ap.add_argument(
        "--min-seconds",
        type=float,
        default=10.0,
        help="more rounds until the timed calls of a size add up to this (0: --repeats only)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument(
        "--losses",
        nargs="+",
        choices=list(LOSSES),
        default=list(LOSSES),
        metavar="NAME",
        help=f"losses to time (infonce, the baseline, is always included): {', '.join(LOSSES)}",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="timed on")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here; use --device cpu")
    names = ["infonce"] + [n for n in args.losses if n != "infonce"]
    res = run(args.sizes, args.repeats, args.threads, names, args.device, args.min_seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "loss_speed" if args.device == "cpu" else "loss_speed_cuda"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
