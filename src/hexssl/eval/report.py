"""Read run directories and compare them in a markdown report with plots.

A run directory follows CONTRACTS.md: ``metrics.csv`` (Lightning CSVLogger: a header of
column names, then sparse rows where most cells are empty) and ``summary.json``
(scalar results such as ``knn_class_top1``). Runs that differ only by seed are grouped
and shown as mean ± std. Only ``csv``, ``json`` and numpy are used (no pandas).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hexssl.eval.plots import plot_bars, plot_curves

SEED_SUFFIX = re.compile(r"[-_]seed\d+$")
# (metric, x column, file name): the training curves worth comparing (HEX_SPEC 8)
CURVES = (
    ("train/hex/eps", "step", "eps.png"),
    ("train/hex/neighbour_frac", "step", "neighbour_frac.png"),
    ("train/online_acc1", "step", "online_acc_train.png"),
    ("val/online_acc1", "epoch", "online_acc_val.png"),
)
BAR_KEYS = ("knn_class_top1", "knn_super_top1")
BAR_LABELS = {"knn_class_top1": "kNN class top-1", "knn_super_top1": "kNN superclass top-1"}
FINAL_METRICS = ("val/online_acc1", "val/online_acc5", "val/purity_class", "val/purity_super")
NOT_RESULTS = frozenset({"seed"})  # numeric summary keys that are settings, not results


# ------------------------------------------------------------------------------ reading
def _to_float(cell: str) -> float:
    """A CSV cell as float; empty or non-numeric cells are NaN."""
    try:
        return float(cell) if cell.strip() else math.nan
    except ValueError:
        return math.nan


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Columns of ``<run_dir>/metrics.csv`` as float arrays, empty cells as NaN.

    Shape:
        every array is (R,) for R data rows.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = (Path(tmp.name) / "metrics.csv").write_text("step,train/hex/eps\\n1,0.9\\n2,\\n")
        >>> m = read_metrics(tmp.name)
        >>> m["step"].tolist(), m["train/hex/eps"][np.isfinite(m["train/hex/eps"])].tolist()
        ([1.0, 2.0], [0.9])
        >>> tmp.cleanup()
    """
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty (no header row)")
    header, body = rows[0], rows[1:]
    table = np.full((len(body), len(header)), np.nan)  # (R, columns)
    for r, row in enumerate(body):
        table[r, : len(row)] = [_to_float(c) for c in row[: len(header)]]
    return {name: table[:, j] for j, name in enumerate(header)}


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """``<run_dir>/summary.json`` as a dict; ``{}`` when the run has none."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return {}
    with path.open() as f:
        summary = json.load(f)
    if not isinstance(summary, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(summary).__name__}")
    return summary


def run_label(run_dir: str | Path, summary: dict[str, Any] | None = None) -> str:
    """Group label: summary ``label``, else the directory name without ``-seedN``/``_seedN``."""
    summary = read_summary(run_dir) if summary is None else summary
    label = summary.get("label")
    return str(label) if label else SEED_SUFFIX.sub("", Path(run_dir).name)


def last_finite(values: np.ndarray) -> float:
    """Last non-NaN value of a sparse column (NaN if none)."""
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def run_scalars(run_dir: str | Path) -> dict[str, float]:
    """Numeric summary entries plus ``final <metric>`` for the val metrics in metrics.csv."""
    summary = read_summary(run_dir)
    out = {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in NOT_RESULTS
    }
    if (Path(run_dir) / "metrics.csv").is_file():
        metrics = read_metrics(run_dir)
        out.update({f"final {m}": last_finite(metrics[m]) for m in FINAL_METRICS if m in metrics})
    return out


# ---------------------------------------------------------------------------- grouping
def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Run directories by :func:`run_label`, in first-seen order."""
    groups: dict[str, list[Path]] = {}
    for d in run_dirs:
        groups.setdefault(run_label(d), []).append(Path(d))
    return groups


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values, NaN if none."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def format_cell(values: Sequence[float]) -> str:
    """``mean ± std`` over several seeds, the bare value for one, ``-`` for none."""
    finite = [x for x in values if math.isfinite(x)]
    if not finite:
        return "-"
    mean, std = mean_std(finite)
    return f"{mean:.4g}" if len(finite) == 1 else f"{mean:.4g} ± {std:.4g}"


def _ordered_keys(scalars: Sequence[dict[str, float]]) -> list[str]:
    """kNN bar keys first, then other summary keys sorted, then ``final`` metrics."""
    present = {k for s in scalars for k in s}
    summary_keys = sorted(k for k in present if k not in BAR_KEYS and not k.startswith("final "))
    finals = [f"final {m}" for m in FINAL_METRICS if f"final {m}" in present]
    return [k for k in BAR_KEYS if k in present] + summary_keys + finals


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ------------------------------------------------------------------------------ report
def _results_table(groups: dict[str, list[Path]]) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """Markdown table of mean ± std per group, and the raw values per group and key."""
    scalars = {g: [run_scalars(d) for d in dirs] for g, dirs in groups.items()}
    keys = _ordered_keys([s for runs in scalars.values() for s in runs])
    values = {
        g: {k: [s.get(k, math.nan) for s in runs] for k in keys} for g, runs in scalars.items()
    }
    rows = [[g, str(len(groups[g]))] + [format_cell(values[g][k]) for k in keys] for g in groups]
    return markdown_table(["run", "seeds", *keys], rows), values


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, or full paths where two runs share a name."""
    names = [d.name for d in run_dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, run_dirs)]


def _curve_plots(groups: dict[str, list[Path]], out_dir: Path) -> list[str]:
    """Write the CURVES that any run logged; return their markdown image lines."""
    pairs = [(g, d) for g, ds in groups.items() for d in ds]
    names = _unique_names([d for _, d in pairs])
    group_of = {n: g for n, (g, _) in zip(names, pairs)}
    runs = {n: read_metrics(d) for n, (_, d) in zip(names, pairs) if (d / "metrics.csv").is_file()}
    lines = []
    for metric, x, filename in CURVES:
        if any(metric in cols for cols in runs.values()):
            plot_curves(runs, metric, out_dir / filename, x=x, groups=group_of)
            lines.append(f"![{metric}]({filename})")
    return lines


def _bar_plot(values: dict[str, dict[str, list[float]]], out_dir: Path) -> list[str]:
    """kNN class vs superclass bars (mean ± std over seeds) when summaries have them."""
    keys = [k for k in BAR_KEYS if any(k in v for v in values.values())]
    if not keys:
        return []
    stats = {g: {k: mean_std(v[k]) for k in keys} for g, v in values.items()}
    means = {g: {k: s[0] for k, s in st.items()} for g, st in stats.items()}
    stds = {g: {k: s[1] for k, s in st.items()} for g, st in stats.items()}
    plot_bars(means, keys, out_dir / "knn.png", errors=stds, key_labels=BAR_LABELS)
    return ["![kNN accuracy](knn.png)"]


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> str:
    """Compare runs in ``out_dir/report.md`` with PNG plots; return the markdown.

    Runs are grouped by summary ``label`` (else the directory name without a trailing
    ``-seedN``/``_seedN``); a group with several runs shows mean ± sample std. Plots:
    eps, neighbour fraction and online-accuracy curves from metrics.csv (one line per
    run, seeds share a colour) and kNN class vs superclass bars from summary.json
    (``knn_class_top1``, ``knn_super_top1``), each only when some run has the data.

    Example:
        >>> import shutil, tempfile
        >>> tmp = Path(tempfile.mkdtemp())
        >>> for name, knn in (("simclr-seed0", 30), ("simclr-seed1", 32), ("hex-seed0", 31)):
        ...     (tmp / name).mkdir()
        ...     _ = (tmp / name / "summary.json").write_text(json.dumps({"knn_class_top1": knn}))
        >>> runs = [tmp / "simclr-seed0", tmp / "simclr-seed1", tmp / "hex-seed0"]
        >>> md = compare_runs(runs, tmp / "report")  # writes report/report.md and the PNGs
        >>> [line for line in md.splitlines() if line.startswith("| simclr")]  # mean ± std
        ['| simclr | 2 | 31 ± 1.414 |']
        >>> shutil.rmtree(tmp)
    """
    if not run_dirs:
        raise ValueError("compare_runs needs at least one run directory")
    missing = [str(d) for d in run_dirs if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"run directories not found: {missing}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(run_dirs)
    table, values = _results_table(groups)
    members = [f"- {g}: " + ", ".join(str(d) for d in dirs) for g, dirs in groups.items()]
    parts = ["# Run comparison", table, "Values: mean ± sample std (ddof=1) over seeds."]
    parts += ["## Curves", *(_curve_plots(groups, out) or ["(no run logged these curves)"])]
    parts += ["## kNN", *(_bar_plot(values, out) or ["(no kNN results in summary.json)"])]
    parts += ["## Runs", "\n".join(members)]
    markdown = "\n\n".join(parts) + "\n"
    (out / "report.md").write_text(markdown)
    return markdown
