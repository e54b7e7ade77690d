"""Naive per-anchor oracles of HEX's relatives, written from each paper's equation.

Loop-based NumPy in float64, sharing no code with ``hexssl.losses.relatives``. s is the
(M, K) similarity matrix, pos / self_ the column of each anchor's positive / itself.
"""

from __future__ import annotations

import math

import numpy as np

from .oracle import negatives


def dcl_anchor_loss(s, i, pos, self_, t, w=1.0) -> float:
    """Yeh et al. 2022, DCL (w = 1) and DCLW (weight w): no positive in the denominator."""
    n = negatives(i, s.shape[1], pos, self_)
    return -w * s[i, pos[i]] / t + math.log(sum(math.exp(s[i, j] / t) for j in n))


def vmf_weights(s, pos, sigma) -> list[float]:
    """DCLW: w_i = 2 - exp(s_ip / sigma) / E_k[exp(s_kp / sigma)], E over the anchors."""
    e = [math.exp(s[i, pos[i]] / sigma) for i in range(s.shape[0])]
    mean = sum(e) / len(e)
    return [2.0 - x / mean for x in e]


def hcl_anchor_loss(s, i, pos, self_, t, beta, tau) -> float:
    """Robinson et al. 2021 (HCL), with Chuang et al. 2020's debiasing and clamp.

    Ng = max((N E_q[e^{s/t}] - tau N e^{s_p/t}) / (1 - tau), N e^{-1/t}), where the
    expectation under q_beta is estimated by importance weights e^{beta s/t} / mean.
    beta = 0 is the debiased loss of Chuang et al.
    """
    raw, floor = hcl_estimate(s, i, pos, self_, t, beta, tau)
    p = math.exp(s[i, pos[i]] / t)
    return -s[i, pos[i]] / t + math.log(p + max(raw, floor))


def hcl_estimate(s, i, pos, self_, t, beta, tau) -> tuple[float, float]:
    """(the debiased, reweighted estimate of N E[e^{s/t}], its floor N e^{-1/t})."""
    n = negatives(i, s.shape[1], pos, self_)
    e = np.array([math.exp(s[i, j] / t) for j in n])
    imp = np.array([math.exp(beta * s[i, j] / t) for j in n])
    reweighted = float((imp * e).sum() / imp.mean())
    p = math.exp(s[i, pos[i]] / t)
    return (reweighted - tau * len(n) * p) / (1 - tau), len(n) * math.exp(-1 / t)
