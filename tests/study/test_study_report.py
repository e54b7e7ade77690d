"""Paired statistics and the study report, against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.eval.stats import (
    T975,
    holm,
    mean_ci,
    paired_difference,
    t_quantile_975,
    t_two_sided_p,
)
from hexssl.study.report import study_report


def test_t_quantiles_solve_the_closed_form_cdfs() -> None:
    t1, t2 = t_quantile_975(1), t_quantile_975(2)
    assert 0.5 + math.atan(t1) / math.pi == pytest.approx(0.975, abs=1e-7)  # Cauchy
    assert 0.5 + t2 / (2 * math.sqrt(2 + t2**2)) == pytest.approx(0.975, abs=1e-7)  # df 2
    # beyond the table: published t_{0.975} for df 40, 60, 120
    for df, t in ((40, 2.021075), (60, 2.000298), (120, 1.979930)):
        assert t_quantile_975(df) == pytest.approx(t, abs=1e-4)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile_975(0)


def _t_tail_by_quadrature(t: float, df: int, steps: int = 20000) -> float:
    """2 * integral of the t density from |t| to infinity (x = |t| / u, Simpson on u).

    The density C (1 + x^2 / df)^{-(df+1)/2} times |dx/du| = |t| / u^2 becomes
    C |t| u^{df-1} (u^2 + t^2 / df)^{-(df+1)/2}, finite on [0, 1].
    """
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def f(u: float) -> float:  # density at x = |t| / u times |dx/du|, finite at u = 0
        return math.exp(log_c) * abs(t) * u ** (df - 1) * (u * u + t * t / df) ** (-(df + 1) / 2)

    h = 1.0 / steps
    total = f(0) + f(1) + sum((4 if k % 2 else 2) * f(k * h) for k in range(1, steps))
    return 2 * total * h / 3


def test_t_p_values_match_the_quantiles_and_a_quadrature() -> None:
    for df, q in enumerate(T975, start=1):  # the table's quantiles are the 5 % points
        assert t_two_sided_p(q, df) == pytest.approx(0.05, abs=1e-6)
    for df in (1, 2, 3, 4, 7, 12):
        for t in (0.3, 1.0, 2.5, -4.0):
            assert t_two_sided_p(t, df) == pytest.approx(_t_tail_by_quadrature(t, df), abs=1e-7)
    assert t_two_sided_p(0.0, 3) == 1.0 and t_two_sided_p(math.inf, 3) == 0.0
    with pytest.raises(ValueError, match="df=0"):
        t_two_sided_p(1.0, 0)


def test_holm_step_down_by_hand() -> None:
    # sorted 0.01, 0.02, 0.04, 0.30 times 4, 3, 2, 1 -> 0.04, 0.06, 0.08, 0.30 (monotone)
    assert holm([0.04, 0.30, 0.01, 0.02]) == pytest.approx([0.08, 0.30, 0.04, 0.06])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # running max keeps the order
    out = holm([math.nan, 0.2])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.2)  # NaN is not in the family


def test_paired_difference_hand_computed() -> None:
    # arm 12, 15, 13.5 against 10, 12, 12: diffs 2, 3, 1.5; sd 0.763763; t_2 = 4.302653
    d = paired_difference({0: 12.0, 1: 15.0, 2: 13.5}, {0: 10.0, 1: 12.0, 2: 12.0})
    assert d.seeds == [0, 1, 2] and d.diffs == [2.0, 3.0, 1.5]
    assert (d.mean, d.sd) == pytest.approx((2.166667, 0.763763), abs=1e-6)
    assert (d.lo, d.hi) == pytest.approx((0.269375, 4.063958), abs=1e-5)
    assert d.rel_diffs == [20.0, 25.0, 12.5]
    assert (d.rel_mean, d.rel_lo, d.rel_hi) == pytest.approx(
        (19.166667, 3.537642, 34.795691), abs=1e-5
    )
    assert d.excludes_zero is True
    # t = 2.166667 / (0.763763 / sqrt 3) = 4.913538; df 2: p = 1 - t / sqrt(t^2 + 2)
    assert d.p_value == pytest.approx(0.039012, abs=1e-6)


def test_interval_straddling_zero_and_unpaired_seeds() -> None:
    d = paired_difference({0: 11.0, 1: 9.0, 2: 10.5, 5: 50.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert d.seeds == [0, 1, 2] and d.n == 3  # seed 5 has no baseline: left out
    assert d.lo < 0 < d.hi and d.excludes_zero is False
    one = paired_difference({0: 11.0}, {0: 10.0})
    assert one.excludes_zero is None and math.isnan(one.lo) and math.isnan(one.p_value)
    assert d.p_value > 0.05
    assert math.isnan(mean_ci([])[0])


def test_paired_difference_refuses_lists() -> None:
    # a list's values would be taken as seeds and pair nothing, silently
    with pytest.raises(TypeError, match="seed -> value"):
        paired_difference([11.0, 12.0], {0: 10.0, 1: 10.0})  # type: ignore[arg-type]


def _write(results: Path, arm: str, seed: int, **metrics: float) -> None:
    row = {"arm": arm, "seed": seed, "epochs": 60, **metrics}
    (results / f"{arm}-s{seed}.json").write_text(json.dumps(row))


def test_study_report_rebuilds_tables_from_json(tmp_path: Path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    (res / "protocol.yaml").write_text(
        "arms: {simclr: {}, simclr-hex-paper: {}, simclr-oracle: {}}\n"
        "comparisons: [[simclr-hex-paper, simclr], [simclr-oracle, simclr]]\n"
        "label_using: [simclr-oracle]\n"
    )
    for seed, (base, arm) in enumerate(((10.0, 12.0), (12.0, 15.0), (12.0, 13.5))):
        _write(
            res, "simclr", seed, knn_class_top1=base, purity_class=0.05, purity_class_chance=0.02
        )
        _write(res, "simclr-hex-paper", seed, knn_class_top1=arm, final_eps=0.7)
        _write(res, "simclr-oracle", seed, knn_class_top1=base)
    (res / "curves").mkdir()
    (res / "curves" / "simclr-hex-paper-s0.csv").write_text(
        "step,val/purity_q99_class,val/purity_eps\n25,0.03,0.9\n50,0.04,0.85\n"
    )
    md = study_report(res, tmp_path / "out")
    assert "| simclr | 3 | 11.33 ± 1.15 |" in md
    assert "0.050 ± 0.000 (chance 0.020 ± 0.000)" in md
    assert "simclr-oracle (uses labels)" in md
    row = next(
        r
        for r in md.splitlines()
        if r.startswith("| simclr-hex-paper - simclr | knn_class") and "s0:" in r
    )
    assert "s0: +2.00, s1: +3.00, s2: +1.50" in row and "| +2.17 |" in row
    assert "[+0.27, +4.06]" in row and "+19.2 %" in row and "[+3.54, +34.80] %" in row
    assert row.endswith("yes, above 0 | 0.039 | 0.078 |")  # Holm over the 2 rows
    oracle = next(
        r
        for r in md.splitlines()
        if r.startswith("| simclr-oracle - simclr | knn_class") and "s0:" in r
    )
    verdict = (  # sd of (2, 3, 1.5) = 0.764: t(0.975, 3) / 2 x 0.764 = 1.22 > 1 at n = 4
        "| simclr-hex-paper - simclr | knn_class_top1 | 3 | 0.078 | no difference resolved "
        "at 3 seeds (+2.17 [+0.27, +4.06] points; the interval alone excludes 0, not after "
        "Holm) | 5 |"
    )
    assert verdict in md.splitlines()
    assert "[+0.00, +0.00]" in oracle  # equal arms: CI [0, 0], p 1
    assert oracle.endswith("| no | 1.000 | 1.000 |")
    assert (tmp_path / "out" / "emergence_purity_class.png").stat().st_size > 1000
    assert "![paired differences](paired_differences.png)" in md
    per_run = md[md.index("## Per run") :]
    assert "| simclr-hex-paper | 1 | 15.00 |" in per_run  # seed 1's own value
    assert "| simclr-oracle (uses labels) | 2 | 12.00 |" in per_run
    assert (tmp_path / "out" / "paired_differences.png").stat().st_size > 1000
    assert (tmp_path / "out" / "study.md").read_text() == md


def test_report_cli_study_mode(tmp_path: Path) -> None:
    _write(tmp_path, "simclr", 0, knn_class_top1=10.0)
    _write(tmp_path, "barlow", 0, knn_class_top1=9.0)
    assert main(["report", str(tmp_path), "--study", "--out", str(tmp_path / "o")]) == 0
    assert "barlow - simclr" in (tmp_path / "o" / "study.md").read_text()
    assert main(["report", str(tmp_path / "o"), "--study", "--out", str(tmp_path / "p")]) == 2


def test_report_with_only_a_baseline_says_there_is_nothing_to_pair(tmp_path: Path) -> None:
    _write(tmp_path, "simclr", 0, knn_class_top1=10.0)
    (tmp_path / "protocol.yaml").write_text(
        "arms: {simclr: {}, simclr-hex-paper: {}}\ncomparisons: [[simclr-hex-paper, simclr]]\n"
    )
    md = study_report(tmp_path, tmp_path / "out")
    assert "| simclr | 1 | 10.00 |" in md
    assert "no comparison has both of its arms yet" in md
    assert "paired_differences.png" not in md
    assert not (tmp_path / "out" / "paired_differences.png").exists()


def test_study_report_pairs_transfer_results_within_each_dataset(tmp_path: Path) -> None:
    (tmp_path / "protocol.yaml").write_text(
        "arms: {simclr: {}, simclr-hex-paper: {}}\ncomparisons: [[simclr-hex-paper, simclr]]\n"
    )
    cifar = tmp_path / "transfer" / "cifar10-jpeg"
    cifar.mkdir(parents=True)
    for seed, (base, arm) in enumerate(((60.0, 59.0), (61.0, 60.5), (62.0, 61.0))):
        _write(tmp_path, "simclr", seed, knn_class_top1=20.0)
        _write(tmp_path, "simclr-hex-paper", seed, knn_class_top1=20.0)
        _write(cifar, "simclr", seed, knn_class_top1=base, knn_super_top1=90.0)
        _write(cifar, "simclr-hex-paper", seed, knn_class_top1=arm, knn_super_top1=90.0)
    md = study_report(tmp_path, tmp_path / "out")
    part = md[md.index("## Transfer") : md.index("## Emergence")]
    assert "### cifar10-jpeg" in part and "6 released backbones" in part
    assert "| simclr | 3 | 61.00 ± 1.00 | 90.00 ± 0.00 |" in part
    row = next(r for r in part.splitlines() if "simclr-hex-paper - simclr | knn_class" in r)
    assert "s0: -1.00, s1: -0.50, s2: -1.00" in row and "| -0.83 |" in row
    assert "[-1.55, -0.12]" in row and "yes, below 0" in row
    # Holm over this dataset's 2 rows (class, super), not over the main table's rows
    assert row.endswith("| 0.038 | 0.075 |")  # p = 1 - t / sqrt(2 + t^2), t = 5
    assert "linear_top1" not in part  # transfer JSONs hold kNN only
    main_rows = md[md.index("## Paired differences") : md.index("## Per run")]
    assert "-0.83" not in main_rows


def test_study_report_without_transfer_has_no_transfer_section(tmp_path: Path) -> None:
    _write(tmp_path, "simclr", 0, knn_class_top1=10.0)
    (tmp_path / "transfer" / "empty").mkdir(parents=True)
    assert "## Transfer" not in study_report(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("study", ["hex_study", "hex_study_gpu"])
def test_committed_study_report_is_what_the_committed_jsons_rebuild(
    study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/<study>/study.md must be `hexssl study report` of the committed results."""
    repo = Path(__file__).resolve().parents[2]
    committed = repo / "docs" / study / "study.md"
    monkeypatch.chdir(repo)  # the report names its results folder as given
    rebuilt = study_report(Path("benchmarks/results") / study, tmp_path / "out")
    assert rebuilt == committed.read_text(), (
        f"docs/{study}/study.md is stale: run "
        f"`hexssl study report benchmarks/results/{study} --out docs/{study}`"
    )
