"""Paired comparisons over seeds: per-seed differences, a Student t confidence interval,
the paired t-test's p-value and Holm's adjustment of a family of p-values.

No scipy: the two-sided 95 % t quantiles come from a table (df 1-30, six digits, as in
any statistics text) and, above df 30, from the Cornish-Fisher expansion of t in terms
of the normal quantile (Abramowitz & Stegun 26.7.5), accurate to < 1e-4 there. The t
distribution's CDF uses its closed form for integer df (Abramowitz & Stegun 26.7.3-4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# t_{0.975, df} for df = 1..30
T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
Z975 = 1.959963985


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95 %).

    Example:
        >>> round(t_quantile_975(2), 4)   # 3 paired seeds
        4.3027
    """
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (a t-interval needs at least 2 pairs)")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's T with integer ``df`` >= 1 (A&S 26.7.3-4).

    With theta = atan(|t| / sqrt(df)), P(|T| < |t|) is a finite series in cos(theta):
    2 theta / pi + (2 / pi) sin(theta) (c + 2/3 c^3 + ...) for odd df and
    sin(theta) (1 + 1/2 c^2 + 3/8 c^4 + ...) for even df, up to the power df - 2.

    Example:
        >>> round(t_two_sided_p(4.302653, 2), 6)   # the 95 % quantile at df 2
        0.05
    """
    if df < 1:
        raise ValueError(f"df={df} must be >= 1 (a t-test needs at least 2 pairs)")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    term = 1.0 if df % 2 == 0 else c
    series = term
    for k in range(2 if df % 2 == 0 else 3, df - 1, 2):  # the powers c^k, k < df - 1
        term *= (k - 1) / k * c * c
        series += term
    inside = s * series if df % 2 == 0 else 2 / math.pi * (theta + (s * series if df > 1 else 0))
    return min(1.0, max(0.0, 1.0 - inside))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (1979) of a family of p-values; NaN entries stay NaN.

    Reject H_(i) at level a when every adjusted p up to it is <= a; this controls the
    family-wise error rate at a for any dependence between the tests.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    ranked = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running, m = 0.0, len(ranked)
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 12)
    return out


def mean_ci(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, sample std, lower, upper) of the 95 % t-interval; NaN bounds for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


@dataclass
class PairedDifference:
    """``arm - baseline`` per shared seed, in absolute units and relative to the baseline (%).

    The relative difference of a seed is 100 * (a - b) / b; both intervals are 95 %
    t-intervals over the seeds (df = pairs - 1).
    """

    seeds: list[int]
    diffs: list[float]
    rel_diffs: list[float]
    mean: float = field(init=False)
    sd: float = field(init=False)
    lo: float = field(init=False)
    hi: float = field(init=False)
    rel_mean: float = field(init=False)
    rel_lo: float = field(init=False)
    rel_hi: float = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.sd, self.lo, self.hi = mean_ci(self.diffs)
        self.rel_mean, _, self.rel_lo, self.rel_hi = mean_ci(self.rel_diffs)

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.diffs)

    @property
    def p_value(self) -> float:
        """Two-sided paired t-test of mean 0 (df = pairs - 1); NaN with fewer than 2 pairs.

        p < 0.05 exactly when the 95 % interval excludes 0. Identical differences give
        sd 0: p = 1 for a mean of 0, else 0.
        """
        if self.n < 2:
            return math.nan
        if self.sd == 0:
            return 1.0 if self.mean == 0 else 0.0
        return t_two_sided_p(self.mean / (self.sd / math.sqrt(self.n)), self.n - 1)

    @property
    def excludes_zero(self) -> bool | None:
        """True when the 95 % interval lies on one side of 0; None without an interval."""
        if math.isnan(self.lo):
            return None
        return self.lo > 0 or self.hi < 0


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float]) -> PairedDifference:
    """Pair two arms by seed (seeds missing on either side, or non-finite values, are left out).

    Example:
        >>> d = paired_difference({0: 12.0, 1: 13.0, 2: 14.0}, {0: 10.0, 1: 10.0, 2: 10.0})
        >>> d.diffs, round(d.mean, 3), d.excludes_zero
        ([2.0, 3.0, 4.0], 3.0, True)
    """
    for name, side in (("arm", arm), ("baseline", baseline)):
        if not isinstance(side, Mapping):  # a list would pair its values, not its seeds
            raise TypeError(
                f"{name} must map seed -> value, e.g. {{0: 27.8}}; got {type(side).__name__}"
            )
    seeds = sorted(
        s for s in set(arm) & set(baseline) if math.isfinite(arm[s]) and math.isfinite(baseline[s])
    )
    diffs = [arm[s] - baseline[s] for s in seeds]
    rel = [100.0 * (arm[s] - baseline[s]) / baseline[s] if baseline[s] else math.nan for s in seeds]
    return PairedDifference(seeds, diffs, [r for r in rel if math.isfinite(r)])


def seeds_to_resolve(sd: float, delta: float, max_seeds: int = 10_000) -> int | None:
    """Paired seeds whose 95 % t-interval would be no wider than ``delta`` on each side.

    The smallest n >= 2 with ``t_{0.975, n-1} * sd / sqrt(n) <= delta``, for ``sd`` the
    observed standard deviation of the pair differences: at that many seeds, a mean
    difference of ``delta`` or more would have an interval that excludes 0. This is a
    precision rule, not a power calculation: if the true difference were exactly
    ``delta``, that interval would exclude 0 in about half of such studies (for 80 %
    power, ask for ``delta / 2``, roughly). None when ``sd`` is unknown (fewer than 2
    pairs) or more than ``max_seeds`` would be needed.

    Example:
        >>> seeds_to_resolve(1.0, 1.0)  # t / sqrt(n): 1.05 at n = 6, 0.92 at n = 7
        7
        >>> seeds_to_resolve(0.0, 1.0), seeds_to_resolve(float("nan"), 1.0)
        (2, None)
    """
    if not math.isfinite(sd) or delta <= 0:
        return None
    for n in range(2, max_seeds + 1):
        if t_quantile_975(n - 1) * sd / math.sqrt(n) <= delta:
            return n
    return None
