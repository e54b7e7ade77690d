"""The study's verdict: sentences, Holm across the table, seeds to resolve a difference.

Expected values are computed by hand from the formulas (t quantiles from a table).
"""

from __future__ import annotations

import math

import pytest

from hexssl.eval.stats import paired_difference, seeds_to_resolve, t_two_sided_p
from hexssl.study.report import verdict, verdict_table

BASE = {0: 10.0, 1: 10.0, 2: 10.0}


def test_seeds_to_resolve_is_the_smallest_n_whose_half_width_fits() -> None:
    # sd 1, delta 1: t(0.975, 5) / sqrt(6) = 2.570582 / 2.449490 = 1.0494 > 1,
    #                t(0.975, 6) / sqrt(7) = 2.446912 / 2.645751 = 0.9248 <= 1
    assert seeds_to_resolve(1.0, 1.0) == 7
    # sd 2, delta 1: t/sqrt(n) <= 0.5: n = 17 gives 2.119905 / 4.1231 = 0.5141, n = 18
    # gives 2.109816 / 4.2426 = 0.4973
    assert seeds_to_resolve(2.0, 1.0) == 18
    assert seeds_to_resolve(0.5, 1.0) == 4  # 3.182446 / 2 * 0.5 = 0.7956; n = 3: 1.2421
    assert seeds_to_resolve(0.0, 1.0) == 2
    assert seeds_to_resolve(math.nan, 1.0) is None and seeds_to_resolve(1.0, 0.0) is None
    assert seeds_to_resolve(1000.0, 1.0, max_seeds=50) is None


def test_a_resolved_difference_names_the_better_arm() -> None:
    d = paired_difference({0: 12.0, 1: 13.0, 2: 14.0}, BASE)  # diffs 2, 3, 4: sd 1
    # mean 3, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.4841
    assert (round(d.lo, 4), round(d.hi, 4)) == (0.5159, 5.4841)
    # t = 3 sqrt(3) = 5.196; df 2: p = 1 - t / sqrt(2 + t^2) = 1 - 5.196 / 5.385 = 0.0351
    assert d.p_value == pytest.approx(1 - 5.196152 / math.sqrt(2 + 27), abs=1e-6)
    assert verdict("hex", "simclr", d, d.p_value) == "+3.00 [+0.52, +5.48] points, hex better"
    worse = paired_difference(BASE, {0: 12.0, 1: 13.0, 2: 14.0})
    assert verdict("hex", "simclr", worse, worse.p_value).endswith(", simclr better")


def test_holm_over_the_table_can_unresolve_a_row() -> None:
    strong = paired_difference({0: 12.0, 1: 13.0, 2: 14.0}, BASE)  # p = 0.0351
    null = paired_difference({0: 11.0, 1: 9.0, 2: 10.0}, BASE)  # diffs 1, -1, 0: p = 1
    assert null.p_value == 1.0 and round(null.sd, 6) == 1.0
    table = verdict_table({("hex", "simclr", "knn"): strong, ("hex", "simclr", "lin"): null})
    # Holm: 2 x 0.0351 = 0.070 for the smaller p, max(0.070, 1 x 1.0) = 1.0 for the other
    rows = table.splitlines()[2:]
    assert rows[0] == (
        "| hex - simclr | knn | 3 | 0.070 | no difference resolved at 3 seeds (+3.00 [+0.52, "
        "+5.48] points; the interval alone excludes 0, not after Holm) | 7 |"
    )
    assert rows[1] == (
        "| hex - simclr | lin | 3 | 1.000 | no difference resolved at 3 seeds (+0.00 [-2.48, "
        "+2.48] points) | 7 |"
    )
    assert "seeds to resolve ±0.5" in verdict_table({("a", "b", "k"): null}, delta=0.5)
    assert t_two_sided_p(5.196152, 2) == pytest.approx(0.035098, abs=1e-5)


def test_one_pair_gives_no_verdict() -> None:
    d = paired_difference({0: 12.0}, {0: 10.0})
    assert verdict("hex", "simclr", d, d.p_value) == (
        "not enough seeds: 1 paired; an interval needs at least 2"
    )
    assert verdict_table({("hex", "simclr", "knn"): d}).splitlines()[2].endswith("| - |")
