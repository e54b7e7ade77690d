"""Naive per-anchor oracle for InfoNCE and HEX, written straight from HEX_SPEC 3-5.

Deliberately slow and loop-based (NumPy, float64) so it shares no code with the
vectorised implementation.
"""

from __future__ import annotations

import math

import numpy as np


def nearest_quantile(values: list[float], q: float) -> float:
    """torch.quantile(..., interpolation='nearest'): sorted[round(q (n - 1))], half to even."""
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def negatives(i: int, k: int, pos: list[int], self_: list[int] | None) -> list[int]:
    """N(i): every candidate but the positive and the anchor itself."""
    return [j for j in range(k) if j != pos[i] and (self_ is None or j != self_[i])]


def adaptive_eps(s: np.ndarray, pos, self_, q: float, full_row: bool) -> float:
    rows = []
    for i in range(s.shape[0]):
        cols = range(s.shape[1]) if full_row else negatives(i, s.shape[1], pos, self_)
        vals = [s[i, j] for j in cols]
        rows.append(nearest_quantile(vals, q) if vals else 1.0)
    return float(np.mean(rows))


def paper_anchor_loss(s, i, eps, pos, self_, t, beta, tau, lam) -> float:
    """L_i of HEX_SPEC 4.2-4.3 for one anchor."""
    n = negatives(i, s.shape[1], pos, self_)
    h = [j for j in n if s[i, j] > eps]
    g = [j for j in n if j not in h]
    p = math.exp(s[i, pos[i]] / t)
    local = 0.0
    if h:
        expo = np.array([math.exp(beta * s[i, j] / t) for j in h])
        w = len(h) * expo / expo.sum()
        r = sum(w[a] * math.exp(s[i, j] / t) for a, j in enumerate(h))
        local = r
        if tau > 0:
            local = max((r - tau * len(h) * p) / (1 - tau), len(h) * math.exp(-1 / t))
    d = p + lam * local + sum(math.exp(s[i, j] / t) for j in g)
    return -s[i, pos[i]] / t + math.log(d)


def reference_anchor_loss(s, i, eps, pos, self_, t, minmax: bool) -> float:
    """L_i of HEX_SPEC 4.4: positive and neighbours removed from the denominator."""
    n = negatives(i, s.shape[1], pos, self_)
    row = s[i]
    if minmax:
        row = (row - row.min()) / (row.max() - row.min())
    g = [j for j in n if not row[j] > eps]
    if not g:
        g = n
    terms = [math.exp(s[i, j] / t) for j in g] if g else [math.exp(s[i, pos[i]] / t)]
    return -s[i, pos[i]] / t + math.log(sum(terms))


def infonce_anchor_loss(s, i, pos, self_, t) -> float:
    n = negatives(i, s.shape[1], pos, self_)
    d = math.exp(s[i, pos[i]] / t) + sum(math.exp(s[i, j] / t) for j in n)
    return -s[i, pos[i]] / t + math.log(d)


def mean_loss(fn, s, *args) -> float:
    return float(np.mean([fn(s, i, *args) for i in range(s.shape[0])]))
