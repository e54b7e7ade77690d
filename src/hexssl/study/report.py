"""The study report: tables and emergence plots rebuilt from per-run JSON files.

Input: a results folder written by :func:`hexssl.study.run_study` (``<arm>-s<seed>.json``,
optionally ``protocol.yaml`` and ``curves/<arm>-s<seed>.csv``). Output: ``study.md`` with

* mean ± std over seeds per arm, and every run's own values,
* for each comparison (arm vs baseline, from the protocol; else every arm vs the first)
  the difference per seed, its mean and 95 % t-interval, absolute and relative, and
  whether the interval excludes 0,
* a forest plot of those differences (``paired_differences.png``),
* PNG plots of the emergence curves (purity and eps over training),
* for each ``transfer/<dataset>/`` folder (written by ``--transfer``), kNN class and
  superclass per arm and the same comparisons' paired differences, Holm-adjusted within
  that dataset.

``hexssl report <results> --study --out <dir>``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from hexssl.eval.plots import IntervalRow, plot_curves, plot_intervals
from hexssl.eval.report import markdown_table, mean_std
from hexssl.eval.stats import PairedDifference, holm, paired_difference, seeds_to_resolve
from hexssl.study.evaluation import read_curves

RESULT_NAME = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)\.json$")
TABLE = (  # (column, key, format)
    ("kNN class@1", "knn_class_top1", "{:.2f}"),
    ("kNN super@1", "knn_super_top1", "{:.2f}"),
    ("linear@1 100%", "linear_top1", "{:.2f}"),
    ("linear@1 10%", "linear10_top1", "{:.2f}"),
    ("purity class", "purity_class", "{:.3f}"),
    ("purity super", "purity_super", "{:.3f}"),
    ("erank global", "erank_global", "{:.1f}"),
    ("erank super", "erank_super", "{:.1f}"),
    ("final eps", "final_eps", "{:.3f}"),
    ("neigh. frac", "final_neighbour_frac", "{:.4f}"),
    ("train s", "seconds", "{:.0f}"),
)
COMPARED = ("knn_class_top1", "knn_super_top1", "linear_top1", "linear10_top1")
CHANCE = {"purity_class": "purity_class_chance", "purity_super": "purity_super_chance"}
TRANSFER_TABLE = TABLE[:2]  # a transfer JSON holds kNN class and superclass only
TRANSFER_COMPARED = COMPARED[:2]
CURVES = (  # (column of curves/*.csv, file, title)
    ("val/purity_q99_class", "emergence_purity_class.png", "class purity of H (q = 0.99)"),
    ("val/purity_q99_super", "emergence_purity_super.png", "superclass purity of H (q = 0.99)"),
    ("val/purity_eps", "emergence_eps.png", "eps of the run's own rule, fixed val batch"),
    ("train/hex/eps", "emergence_train_eps.png", "eps in training (HEX arms)"),
)
CURVE_ARMS = 4  # arms 1-4 of the protocol (the SimCLR family)
DELTA = 1.0  # the difference (accuracy points) whose seeds the verdict counts, by default
ALPHA = 0.05  # family-wise: a Holm p below it resolves a difference


def load_results(results_dir: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{arm: {seed: result}}`` from ``<arm>-s<seed>.json`` files, arms in first-seen order."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        m = RESULT_NAME.match(path.name)
        if m is None:
            continue
        result = json.loads(path.read_text())
        out.setdefault(result.get("arm", m["arm"]), {})[int(result.get("seed", m["seed"]))] = result
    return out


def _plan(results_dir: Path, arms: list[str]) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    """(arm order, comparisons, label-using arms) from ``protocol.yaml``, else defaults."""
    path = results_dir / "protocol.yaml"
    if not path.is_file():  # every arm against simclr (else the first arm)
        base = "simclr" if "simclr" in arms else arms[0]
        order = [base, *(a for a in arms if a != base)]
        return order, [(a, base) for a in order[1:]], set()
    proto = yaml.safe_load(path.read_text())
    order = [a for a in proto.get("arms", {}) if a in arms] + [
        a for a in arms if a not in proto.get("arms", {})
    ]
    pairs = [(str(a), str(b)) for a, b in proto.get("comparisons", [])]
    return order, pairs, {str(a) for a in proto.get("label_using", [])}


def _value(result: dict[str, Any], key: str) -> float:
    v = result.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _cell(values: list[float], fmt: str) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    mean, std = mean_std(finite)
    return fmt.format(mean) if len(finite) == 1 else f"{fmt.format(mean)} ± {fmt.format(std)}"


def _with_chance(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    """Mean ± std of ``key``, with its chance level in brackets where the runs record one."""
    cell = _cell([_value(r, key) for r in runs], fmt)
    chance = [_value(r, CHANCE[key]) for r in runs] if key in CHANCE else []
    if any(math.isfinite(c) for c in chance):
        cell += f" (chance {_cell(chance, '{:.3f}')})"
    return cell


def arm_table(
    results: dict[str, dict[int, dict[str, Any]]], order: list[str], label_using: set[str],
    table: tuple[tuple[str, str, str], ...] = TABLE,
) -> str:  # fmt: skip
    """Mean ± sample std (ddof 1) over seeds, one row per arm (``table``: its columns)."""
    rows = []
    for arm in order:
        runs = [results[arm][s] for s in sorted(results[arm])]
        name = f"{arm} (uses labels)" if arm in label_using else arm
        cells = [_with_chance(runs, key, fmt) for _, key, fmt in table]
        rows.append([name, str(len(runs)), *cells])
    return markdown_table(["arm", "seeds", *(c for c, _, _ in table)], rows)


def run_table(
    results: dict[str, dict[int, dict[str, Any]]], order: list[str], label_using: set[str]
) -> str:
    """One row per run (arm, seed), with the machine it finished on where recorded."""
    rows = []
    for arm in order:
        name = f"{arm} (uses labels)" if arm in label_using else arm
        for seed in sorted(results[arm]):
            r = results[arm][seed]
            cells = [_cell([_value(r, key)], fmt) for _, key, fmt in TABLE]
            rows.append([name, str(seed), *cells, str(r.get("machine", "-"))])
    return markdown_table(["arm", "seed", *(c for c, _, _ in TABLE), "finished on"], rows)


def _interval(lo: float, hi: float, unit: str = "") -> str:
    return "-" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]{unit}"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.3f}"


def _verdict(d: PairedDifference) -> str:
    if d.excludes_zero is None:
        return "n/a (fewer than 2 pairs)"
    if not d.excludes_zero:
        return "no"
    return "yes, above 0" if d.lo > 0 else "yes, below 0"


def comparisons(
    results: dict[str, dict[int, dict[str, Any]]], pairs: list[tuple[str, str]],
    keys: tuple[str, ...] = COMPARED,
) -> dict[tuple[str, str, str], PairedDifference]:  # fmt: skip
    """Paired differences per (arm, baseline, metric) for the metrics ``keys``."""
    out = {}
    for arm, base in pairs:
        if arm not in results or base not in results:
            continue
        for key in keys:
            a = {s: _value(r, key) for s, r in results[arm].items()}
            b = {s: _value(r, key) for s, r in results[base].items()}
            out[(arm, base, key)] = paired_difference(a, b)
    return out


def holm_adjusted(diffs: dict[tuple[str, str, str], PairedDifference]) -> list[float]:
    """Holm's adjustment of every row's paired-t p-value: the family is the whole table."""
    return holm([d.p_value for d in diffs.values()])


def verdict(arm: str, base: str, d: PairedDifference, p_holm: float, unit: str = "points") -> str:
    """One plain sentence: the difference and which arm is better, or that none is resolved.

    Example:
        >>> d = paired_difference({0: 12.0, 1: 13.0, 2: 14.0}, {0: 10.0, 1: 11.0, 2: 11.0})
        >>> verdict("hex", "simclr", d, 0.01)
        '+2.33 [+0.90, +3.77] points, hex better'
        >>> verdict("hex", "simclr", d, 0.2)
        'no difference resolved at 3 seeds (+2.33 [+0.90, +3.77] points; the interval alone excludes 0, not after Holm)'
    """  # noqa: E501
    if d.n < 2:
        return f"not enough seeds: {d.n} paired; an interval needs at least 2"
    shown = f"{d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] {unit}"
    if p_holm < ALPHA:
        return f"{shown}, {arm if d.mean > 0 else base} better"
    note = "; the interval alone excludes 0, not after Holm" if d.excludes_zero else ""
    return f"no difference resolved at {d.n} seeds ({shown}{note})"


def verdict_table(diffs: dict[tuple[str, str, str], PairedDifference], delta: float = DELTA) -> str:
    """One row per (comparison, metric): difference, Holm p, the sentence, seeds for ``delta``."""
    header = ["arm - baseline", "metric", "seeds", "Holm p", "verdict",
              f"seeds to resolve ±{delta:g}"]  # fmt: skip
    rows = []
    for ((arm, base, key), d), p_holm in zip(diffs.items(), holm_adjusted(diffs)):
        need = seeds_to_resolve(d.sd, delta)
        rows.append([f"{arm} - {base}", key, str(d.n), _p(p_holm), verdict(arm, base, d, p_holm),
                     "-" if need is None else str(need)])  # fmt: skip
    if not rows:
        return "(no comparison has both of its arms yet: nothing to pair)"
    return markdown_table(header, rows)


def difference_table(diffs: dict[tuple[str, str, str], PairedDifference]) -> str:
    """One row per (comparison, metric): per-seed diffs, mean, 95 % t-intervals, verdict."""
    header = ["arm - baseline", "metric", "per seed", "mean", "95 % CI", "relative mean",
              "relative 95 % CI", "CI excludes 0?", "p", "Holm p"]  # fmt: skip
    rows = []
    for ((arm, base, key), d), p_holm in zip(diffs.items(), holm_adjusted(diffs)):
        seeds = ", ".join(f"s{s}: {v:+.2f}" for s, v in zip(d.seeds, d.diffs)) or "-"
        rel = "-" if math.isnan(d.rel_mean) else f"{d.rel_mean:+.1f} %"
        rows.append([
            f"{arm} - {base}", key, seeds, "-" if math.isnan(d.mean) else f"{d.mean:+.2f}",
            _interval(d.lo, d.hi), rel, _interval(d.rel_lo, d.rel_hi, " %"), _verdict(d),
            _p(d.p_value), _p(p_holm),
        ])  # fmt: skip
    if not rows:
        return "(no comparison has both of its arms yet: nothing to pair)"
    return markdown_table(header, rows)


def difference_plot(
    diffs: dict[tuple[str, str, str], PairedDifference], out_dir: Path
) -> list[str]:
    """Forest plot of every paired difference (mean, 95 % t-interval, per-seed values)."""
    names = {key: column for column, key, _ in TABLE}
    rows = [
        IntervalRow(f"{arm} - {base}: {names.get(key, key)}", d.mean, d.lo, d.hi,
                    tuple(d.diffs), group=f"{arm} - {base}")
        for (arm, base, key), d in diffs.items() if d.n
    ]  # fmt: skip
    if not rows:
        return []
    title = "arm - baseline per seed (x), mean (dot), 95 % t-interval (line)"
    plot_intervals(rows, out_dir / "paired_differences.png", "accuracy points", title)
    return ["![paired differences](paired_differences.png)"]


def metric_plots(diffs: dict[tuple[str, str, str], PairedDifference], out_dir: Path) -> list[str]:
    """One forest plot per metric: every comparison's paired differences in that metric."""
    names = {key: column for column, key, _ in TABLE}
    lines = []
    for key in dict.fromkeys(k for _, _, k in diffs):
        rows = [IntervalRow(f"{arm} - {base}", d.mean, d.lo, d.hi, tuple(d.diffs),
                            group=f"{arm} - {base}")
                for (arm, base, k), d in diffs.items() if k == key and d.n]  # fmt: skip
        if rows:
            name = f"paired_differences_{key}.png"
            title = f"{names.get(key, key)}: arm - baseline per seed (x), mean, 95 % t-interval"
            plot_intervals(rows, out_dir / name, "accuracy points", title)
            lines.append(f"![{names.get(key, key)}]({name})")
    return lines


def curve_plots(results_dir: Path, order: list[str], out_dir: Path, seed: int = 0) -> list[str]:
    """Emergence curves of the first CURVE_ARMS arms at ``seed``; markdown image lines."""
    runs = {}
    for arm in order[:CURVE_ARMS]:
        path = results_dir / "curves" / f"{arm}-s{seed}.csv"
        if path.is_file():
            runs[arm] = read_curves(path)
    lines = []
    for column, filename, title in CURVES:
        if any(column in cols for cols in runs.values()):
            plot_curves(runs, column, out_dir / filename, title=f"{title} (seed {seed})")
            lines.append(f"![{column}]({filename})")
    return lines


def transfer_sections(
    results_dir: Path, order: list[str], pairs: list[tuple[str, str]], label_using: set[str]
) -> list[str]:
    """Markdown for each ``transfer/<dataset>/`` folder: kNN per arm and paired differences."""
    parts = []
    for folder in sorted(p for p in (results_dir / "transfer").glob("*") if p.is_dir()):
        results = load_results(folder)
        if not results:
            continue
        arms = [a for a in order if a in results] + [a for a in results if a not in order]
        n = sum(len(r) for r in results.values())
        parts += [
            f"### {folder.name}",
            f"{n} released backbones, kNN (k and T as recorded in each JSON) with the "
            "dataset's train split as the memory bank and its val split as the queries. "
            "Holm p adjusts over this dataset's rows only.",
            arm_table(results, arms, label_using, TRANSFER_TABLE),
            difference_table(comparisons(results, pairs, TRANSFER_COMPARED)),
        ]
    if not parts:
        return []
    intro = ("Kept apart from the protocol's tables: transfer is evaluated on other data "
             "(`benchmarks/hex_study.py --transfer DATA`), so its tests are not in the "
             "Holm family above.")  # fmt: skip
    return ["## Transfer (kNN on other datasets)", intro, *parts]


def study_report(results_dir: str | Path, out_dir: str | Path, delta: float = DELTA) -> str:
    """Write ``<out_dir>/study.md`` (+ PNGs) from the per-run JSON files; return the markdown.

    ``delta``: the difference (accuracy points) for which the verdict says how many
    paired seeds would resolve it at the observed spread.
    """
    results_dir, out = Path(results_dir), Path(out_dir)
    results = load_results(results_dir)
    if not results:
        raise FileNotFoundError(f"no <arm>-s<seed>.json results in {results_dir}")
    out.mkdir(parents=True, exist_ok=True)
    order, pairs, label_using = _plan(results_dir, list(results))
    order = [a for a in order if a in results]
    diffs = comparisons(results, pairs)
    epochs = sorted({str(r.get("epochs")) for runs in results.values() for r in runs.values()})
    parts = [
        "# Does HEX help? Study tables",
        f"Rebuilt from `{results_dir}` by `hexssl study report`. Epochs: {', '.join(epochs)}. "
        "Values: mean ± sample std (ddof 1) over seeds. Purity: share of H(i) (adaptive "
        "q = 0.99 on the tensors HEX acts on, random val batches of 256) with the anchor's "
        "class / superclass; chance in brackets. Arms marked 'uses labels' are upper "
        "bounds, not self-supervised results.",
        arm_table(results, order, label_using),
        "## Verdict",
        "For each comparison and metric: the paired mean difference arm - baseline and its "
        "95 % t-interval over the seeds, in accuracy points. A difference is resolved when "
        f"its Holm-adjusted p (over every row of this table) is below {ALPHA}: then the "
        "chance of any false verdict in the whole table is under 5 %. The last column: "
        f"the paired seeds at which a 95 % t-interval, at the spread of these pair "
        f"differences, would be at most ±{delta:g} points wide, the smallest n with "
        f"t(0.975, n-1) x sd / sqrt(n) <= {delta:g} (a precision rule: a true difference "
        f"of exactly {delta:g} would be resolved in about half of such studies).",
        verdict_table(diffs, delta),
        *metric_plots(diffs, out),
        "## Paired differences",
        "Difference arm - baseline per seed (same seed: same initial backbone, data order "
        "and augmentation stream), its mean and 95 % Student t-interval over the pairs "
        "(df = pairs - 1), in accuracy points and relative to the baseline. p: the "
        "two-sided paired t-test of the same differences (p < 0.05 exactly when the "
        "interval excludes 0). Holm p: p adjusted by Holm's step-down method over every "
        "row of this table, so that a Holm p below 0.05 holds the chance of any false "
        "'excludes 0' in the whole table under 5 %. The per-row intervals are not "
        "corrected for the number of rows.",
        difference_table(diffs),
        *difference_plot(diffs, out),
        "## Per run",
        "Every run's values as in its JSON. `train s` is wall time and is not comparable "
        "across runs that trained on different machines or shared the CPU.",
        run_table(results, order, label_using),
        *transfer_sections(results_dir, order, pairs, label_using),
        "## Emergence",
        *(curve_plots(results_dir, order, out) or ["(no curves/*.csv for seed 0)"]),
    ]
    markdown = "\n\n".join(parts) + "\n"
    (out / "study.md").write_text(markdown)
    return markdown
