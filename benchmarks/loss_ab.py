"""A/B timing of the losses of two source trees in one process: for changes worth a few %.

``loss_speed.py`` is the benchmark of record; between two of its runs the same code moves
by about 0.05x at 2B = 256 (docs/speed.md), more than most single changes to a loss buy.
This script loads ``hexssl.losses`` a second time, from ``--baseline`` (the ``src``
folder of another checkout, e.g. one made by ``git worktree add /tmp/base HEAD~1``),
under the name ``hexssl_baseline.losses``: every ``hexssl.losses`` import inside it goes
to the baseline too; other ``hexssl`` modules (``hexssl.run.hostsync``) come from this
tree. It builds each named loss from both trees, plus a second InfoNCE of this tree, and
calls them all in a new random order every round (seeded), so that neither the
machine's drift nor a loss's place in the round favours one tree. The extra InfoNCE is
an A/A control: its paired ratio to the first shows the harness's own bias (about 1.000
over 2,000 rounds at 2B = 256; a fixed order gave 1.03).

Per loss and size: each tree's median time and ratio to InfoNCE, the median of the
per-round ratios this tree / baseline, and the largest difference between the two
trees' loss values on the same input (0 for a pure speed change).

    python benchmarks/loss_ab.py --baseline /tmp/base/src [--sizes 256] [--rounds 2000]
        [--losses hex_paper decoupled] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from hexssl.run.machine import machine_summary
from loss_speed import LOSSES, alternated_times, loss_table

ALIAS = "hexssl_baseline"


class _BaselineLosses(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``hexssl_baseline.losses[.name]`` from ``<src>/hexssl/losses``, with the
    source's own ``hexssl.losses`` imports renamed to the alias."""

    def __init__(self, src: Path) -> None:
        self.src = src

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != ALIAS and not name.startswith(ALIAS + "."):
            return None
        if name == ALIAS:  # the bare parent package: nothing in it but .losses
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        rel = Path("hexssl", *name.split(".")[1:])
        package = (self.src / rel / "__init__.py").is_file()
        file = self.src / rel / "__init__.py" if package else (self.src / rel).with_suffix(".py")
        if not file.is_file():
            return None
        spec = importlib.machinery.ModuleSpec(name, self, origin=str(file), is_package=package)
        spec.has_location = True
        return spec

    def create_module(self, spec: Any) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        if spec.name == ALIAS:
            module.__path__ = []
            return
        code = Path(str(spec.origin)).read_text().replace("hexssl.losses", f"{ALIAS}.losses")
        exec(compile(code, str(spec.origin), "exec"), module.__dict__)


def load_baseline(src: Path) -> ModuleType:
    """The baseline tree's ``hexssl.losses`` package, as ``hexssl_baseline.losses``."""
    if not (src / "hexssl" / "losses" / "__init__.py").is_file():
        raise SystemExit(
            f"--baseline {src}: no hexssl/losses/__init__.py there; pass the src folder of "
            "a checkout (e.g. /tmp/base/src after `git worktree add /tmp/base HEAD~1`)"
        )
    sys.meta_path.insert(0, _BaselineLosses(src))
    return importlib.import_module(f"{ALIAS}.losses")


def loss_difference(new: torch.nn.Module, base: torch.nn.Module, b: int) -> float:
    """|new - base| of one loss value on the same random (B, 128) embeddings."""
    torch.manual_seed(0)
    z0, z1 = torch.randn(b, 128), torch.randn(b, 128)
    with torch.no_grad():
        return abs(float(new(z0, z1)) - float(base(z0, z1)))


def paired(calls: dict[str, list[float]], a: str, c: str) -> float:
    """Median over rounds of a's time / c's time in the same round."""
    return statistics.median(x / y for x, y in zip(calls[a], calls[c], strict=True))


def run(baseline: ModuleType, sizes: Sequence[int], rounds: int, names: Sequence[str]) -> dict:
    new_table, base_table = loss_table(), loss_table(baseline)
    rows = []
    for n in sizes:
        b = n // 2
        fns = {"infonce": new_table["infonce"](), "infonce_aa": new_table["infonce"]()}
        for name in names:
            fns[f"new:{name}"], fns[f"base:{name}"] = new_table[name](), base_table[name]()
        calls = alternated_times(fns, b, rounds, shuffle=random.Random(n))
        med = {k: statistics.median(v) for k, v in calls.items()}
        row: dict[str, Any] = dict(
            two_b=n,
            rounds=len(calls["infonce"]),
            infonce_ms=med["infonce"] * 1e3,
            aa_control=paired(calls, "infonce_aa", "infonce"),
            losses={},
        )
        for name in names:
            new, base = f"new:{name}", f"base:{name}"
            row["losses"][name] = dict(
                new_ms=med[new] * 1e3,
                base_ms=med[base] * 1e3,
                new_ratio=med[new] / med["infonce"],
                base_ratio=med[base] / med["infonce"],
                new_over_base=paired(calls, new, base),
                loss_difference=loss_difference(fns[new], fns[base], b),
            )
        rows.append(row)
        print(markdown_row(row))
    return dict(
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=machine_summary(),
        baseline=str(Path(str(baseline.__file__)).parents[1]),
        baseline_module=type(base_table["infonce"]()).__module__,  # hexssl_baseline.losses.*
        rows=rows,
    )


def markdown_row(row: dict) -> str:
    head = (
        f"2B = {row['two_b']}, {row['rounds']} rounds, InfoNCE {row['infonce_ms']:.2f} ms, "
        f"A/A control {row['aa_control']:.4f}"
    )
    lines = [head, "", "| loss | baseline ms (ratio) | new ms (ratio) | new / baseline (paired) "
             "| loss difference |", "|---|---|---|---|---|"]  # fmt: skip
    for name, r in row["losses"].items():
        lines.append(
            f"| {name} | {r['base_ms']:.3f} ({r['base_ratio']:.3f}x) | {r['new_ms']:.3f} "
            f"({r['new_ratio']:.3f}x) | {r['new_over_base']:.4f} | {r['loss_difference']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True, help="src folder of the other tree")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256], help="values of 2B")
    ap.add_argument("--rounds", type=int, default=2000, help="timed rounds per size")
    ap.add_argument(
        "--losses",
        nargs="+",
        choices=[n for n in LOSSES if n != "infonce"],
        default=["hex_paper"],
        metavar="NAME",
        help="losses to compare (InfoNCE always runs, twice: the ratios' base and the A/A control)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="folder for loss_ab.json/.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(load_baseline(args.baseline.resolve()), args.sizes, args.rounds, args.losses)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "loss_ab.json").write_text(json.dumps(res, indent=2))
        (args.out / "loss_ab.md").write_text("\n".join(markdown_row(r) for r in res["rows"]))


if __name__ == "__main__":
    main()
