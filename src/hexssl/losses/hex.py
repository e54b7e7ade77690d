"""HEX: the split InfoNCE denominator (HEX_SPEC 4). The only place the HEX maths lives.

HEX_SPEC is ``docs/hex.md`` in the repository; section numbers refer to it.

For anchor i with logits l_ij = s_ij / T, the denominator is

    D_i = pw_i * exp(l_ip) + lambda * Local_i + sum_{j in G(i)} exp(l_ij)

with Local_i the importance-weighted, optionally debiased sum over the neighbours H(i)
(spec 4.2). ``variant="paper"`` uses pw = 1; ``variant="reference"`` reproduces the
authors' code (spec 4.4): pw = 0 and lambda = 0, i.e. positive and neighbours removed.

Memory and speed: the threshold yields H(i) in sparse form straight from one top-k, and
one (M, K) logits buffer is turned into the global exponentials in place; backward reads
it and O(|H|) sparse values. Called by ``contrastive_loss``, HEX returns the whole
per-anchor loss log D_i - s_ip / T (``with_numerator``) and its backward writes the
positive's gradient as well, so autograd differentiates no gather of s_ip. HEX then keeps
one (M, K) tensor for backward, InfoNCE two (see benchmarks/loss_speed.py). The gradient
is written out by hand (``_HexLogDenominator.backward``) and checked by gradcheck and
against autograd of the naive formula in the tests.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from hexssl.losses.infonce import (
    NEG_INF,
    at_least_fp32,
    exclude_,
    positive_logit,
    work_logits,
)
from hexssl.losses.relatives import backward_shares, debias, positive_grad
from hexssl.losses.thresholds import Threshold, build_threshold
from hexssl.run.hostsync import avoid_host_sync

VARIANTS = ("paper", "reference")
LOG2E = 1.0 / math.log(2.0)
HParams = tuple[float, float, float, float, bool]  # beta, tau_plus, lambda, 1/T, detach


def _log(x: float) -> float:
    return math.log(x) if x > 0 else NEG_INF


class Workspace:
    """Holds the (M, K) logits buffer that the HEX forward overwrites in place.

    Passed to the autograd function as a plain object: it is scratch memory, not an
    input that gradients flow to (they flow to ``sim`` through the hand-written backward).
    """

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits


class _HexLogDenominator(torch.autograd.Function):
    """InfoNCE's per-anchor loss log D_i - l_ip with HEX's D_i (HEX_SPEC 4.3) and a
    hand-written backward (the sparse path).

    Inputs: ``sim`` (M, K) (only to receive the gradient), ``lp`` (M,) positive logits
    (values only: their gradient, the numerator's and the denominator's share, goes into
    the gradient of ``sim`` at ``pos_idx`` (M, 1), so autograd has no gather to undo),
    the workspace (logits s / T with positive and self at -inf), H as ``flat`` (nnz,), the
    row-major positions of its entries in the (M, K) matrix, and their ``rows`` (nnz,),
    ``top`` (M,) each row's largest logit over N(i) (``SparseH.top``) or None, the
    positive's weight ``pw`` (0 or 1), hyperparameters. The workspace becomes
    E = e^{l - m} on G(i) in place: the only (M, K) float tensor kept. Per-anchor values
    are (M,), per-neighbour ones (nnz,). Written for few ops: on a CPU at 2B = 256 each
    costs about as much as an (M, K) pass, so the local term takes its sums linearly
    (``SparseLocal``) and the three terms combine with two ``logaddexp``.
    """

    @staticmethod
    def forward(
        ctx: Any, sim: Tensor, lp: Tensor, pos_idx: Tensor, ws: Workspace, flat: Tensor,
        rows: Tensor, top: Tensor | None, pw: float, hp: HParams,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        _, _, lam, _, _ = hp
        logits = ws.logits
        entries = logits.view(-1)
        # (nnz,) neighbour logits; none: no local term (lambda = 0 or H empty everywhere)
        l_h = entries.index_select(0, flat) if lam > 0 and flat.numel() else None
        entries.index_fill_(0, flat, NEG_INF)  # (M, K) now -inf outside G(i)
        m = _global_shift(logits, lp, top, pw, l_h is not None)  # (M,)
        E = _exp_(logits.sub_(m[:, None]))  # (M, K) e^{l - m} on G(i), else 0
        log_d = E.sum(1).log_().add_(m)  # (M,) log sum_G e^l
        loc = _sparse_local(l_h, rows, lp, top, hp) if l_h is not None else None
        if loc is not None:
            log_d = torch.logaddexp(log_d, loc.log_loc)
        if pw:
            log_d = torch.logaddexp(log_d, lp)
        ctx.save_for_backward(E, m, lp, pos_idx, log_d, flat, rows)
        ctx.hp, ctx.pw, ctx.loc = hp, pw, loc  # loc: intermediates, not inputs or outputs
        log_loc = loc.log_loc if loc is not None else torch.full_like(lp, NEG_INF)
        ctx.mark_non_differentiable(log_loc, log_d)
        ctx.set_materialize_grads(False)  # no zeros for the (absent) gradients of the two
        return log_d - lp, log_loc, log_d

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor, _g_loc: Tensor, _g_d: Tensor) -> tuple[Tensor | None, ...]:
        if grad is None:  # only the non-differentiable outputs were used
            return (None,) * 10
        E, m, lp, pos_idx, log_d, flat, rows = ctx.saved_tensors
        _, _, _, inv_t, _ = ctx.hp
        loc: SparseLocal | None = ctx.loc
        grad_s = grad * inv_t  # (M,) d/ds = d/dl / T
        f = _shares(m, lp, loc.log_r if loc is not None else None, log_d, grad_s, ctx.pw, False)
        g = E * f.g[:, None]  # (M, K) d/ds on G(i)
        dpos: Tensor | float = ctx.pw
        if loc is not None and f.r is not None:
            g_h, dpos = _sparse_local_grad(loc, rows, f.r, ctx.pw, ctx.hp)
            g.view(-1).index_copy_(0, flat, g_h)  # E is 0 on H: the local term's share
        g.scatter_(1, pos_idx, positive_grad(f.p, dpos, grad_s))  # E is 0 there
        return g, None, None, None, None, None, None, None, None, None


class _HexLogDenominatorDense(torch.autograd.Function):
    """The same log D_i as :class:`_HexLogDenominator`, with H as a dense (M, K) mask.

    No data-dependent shapes, so no host synchronisation (no ``nonzero``): the path for
    GPUs, where a sync stalls the queue, an (M, K) mask is cheap and every op is a kernel
    launch. So it is written for few ops: per-anchor values stay (M, 1), torch's own
    ``logsumexp`` does the shifting of the local sums, and debiasing and floor fold into
    one ``maximum`` (see :class:`DenseLocal`). Keeps E, the neighbour logits (-inf
    outside H) and H for backward.
    """

    @staticmethod
    def forward(
        ctx: Any, sim: Tensor, lp: Tensor, pos_idx: Tensor, ws: Workspace, H: Tensor, pw: float,
        hp: HParams,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        beta, tau, lam, inv_t, _ = hp
        logits, lp1 = ws.logits, lp[:, None]  # (M, K), (M, 1)
        l_h = torch.where(H, logits, NEG_INF)  # (M, K) neighbour logits, -inf elsewhere
        logits.masked_fill_(H, NEG_INF)  # (M, K) now -inf outside G(i)
        # the shift: max over G(i), and the positive where it is in D (so no row is all
        # -inf; a positive outside D must not set it, e^{l - l_p} can underflow)
        m = logits.amax(1, keepdim=True)  # (M, 1)
        m = torch.maximum(m, lp1) if pw else m
        E = logits.sub_(m).exp_()  # (M, K) e^{l - m} on G(i), 0 elsewhere
        log_g = E.sum(1, keepdim=True).log_().add_(m)  # (M, 1) log sum_G e^l
        loc = _dense_local(l_h, H, lp1, beta, tau, inv_t, lam)
        log_d = torch.logaddexp(log_g, loc.log_loc) if lam > 0 else log_g  # one kernel each,
        log_d = torch.logaddexp(log_d, lp1) if pw else log_d  # where logsumexp takes several
        ctx.save_for_backward(E, l_h, H, m, lp1, pos_idx, log_d, *loc.saved())
        ctx.hp, ctx.pw, ctx.debias = hp, pw, loc.active is not None
        log_loc = loc.log_loc if lam > 0 else torch.full_like(lp1, NEG_INF)  # (M, 1)
        log_d = log_d.view(-1)
        ctx.mark_non_differentiable(log_loc, log_d)
        ctx.set_materialize_grads(False)  # no zeros for the (absent) gradients of the two
        return log_d - lp, log_loc, log_d

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor, _g_loc: Tensor, _g_d: Tensor) -> tuple[Tensor | None, ...]:
        E, l_h, H, m, lp1, pos_idx, log_d, *rest = ctx.saved_tensors
        if grad is None:  # only the non-differentiable outputs were used
            return (None,) * 7
        beta, tau, lam, inv_t, detach = ctx.hp
        grad_s = (grad * inv_t)[:, None]  # (M, 1) d/ds = d/dl / T
        loc = DenseLocal.restore(rest, ctx.debias) if lam > 0 else None
        f = _shares(m, lp1, loc.log_r if loc is not None else None, log_d, grad_s, ctx.pw, True)
        g = E * f.g  # (M, K) d/ds on G(i)
        dpos: Tensor | float = ctx.pw
        if loc is not None and f.r is not None:
            coef, dpos = _local_coef(loc, f.r, ctx.pw, lam, tau)  # (M, 1)
            local = _dense_local_grad(l_h, loc, coef, beta, detach, lam / (1.0 - tau))
            g = torch.where(H, local, g)
        g.scatter_(1, pos_idx, positive_grad(f.p, dpos, grad_s))  # E is 0 there
        return g, None, None, None, None, None, None


class Shares(NamedTuple):
    """e^{x - log D} grad / T per anchor, shaped as ``log_d``: the backward's factors."""

    g: Tensor  # x = m, the shift of G's exponentials
    p: Tensor | None  # x = l_p; None where D has no positive and no local term
    r: Tensor | None  # x = log R; None without a local term


def _shares(
    m: Tensor, lp: Tensor, log_r: Tensor | None, log_d: Tensor, grad_s: Tensor, pw: float,
    stack: bool,
) -> Shares:  # fmt: skip
    """The backward's factors (:func:`relatives.backward_shares`, ``stack`` on the dense
    path); the positive's only where its gradient can reach D (pw, or a local term)."""
    with_p = bool(pw) or log_r is not None
    logs = (m,) + ((lp,) if with_p else ()) + ((log_r,) if log_r is not None else ())
    f = backward_shares(log_d, grad_s, *logs, stack=stack)
    return Shares(f[0], f[1] if with_p else None, f[-1] if log_r is not None else None)


def _exp_(x: Tensor) -> Tensor:
    """e^x in place for the sparse path's (M, K) buffer, which holds about 6 -inf per row
    (positive, self, H(i)). On the CPU as 2^(x log2 e): torch's vectorised ``exp`` there
    takes a scalar path for each vector of floats that holds a -inf, ``exp2`` does not
    (docs/speed.md). Agrees with ``exp`` to a few float32 ulps."""
    return x.mul_(LOG2E).exp2_() if x.device.type == "cpu" else x.exp_()


def _global_shift(logits: Tensor, lp: Tensor, top: Tensor | None, pw: float, local: bool) -> Tensor:
    """The (M,) shift m of e^{l - m} on G(i): at least every logit of D, so nothing
    overflows, and close enough to log D that D e^{-m} cannot underflow.

    With the positive and a local term in D, max(top, l_p) (no (M, K) pass): top =
    max_{N(i)} l bounds G(i); if top is in H(i), then R >= e^top (the largest
    neighbour's weight is >= 1) and either Local >= R / 2 or tau |H| P > R / 2, so
    D e^{-m} >= min(lambda, 1 / (tau |H|)) / 2. Otherwise the max over G(i) (and l_p
    where it is in D): there D can be far below e^top (the reference variant drops H).
    """
    if local and pw and top is not None:
        return torch.maximum(top, lp)
    m = logits.amax(1)  # the logits are -inf outside G(i) by now
    return torch.maximum(m, lp) if pw else m  # (without it e^{l - l_p} can underflow)


def _local_coef(
    loc: DenseLocal, r_share: Tensor, pw: float, lam: float, tau: float
) -> tuple[Tensor, Tensor | float]:
    """(d log D / d log R / T per anchor, the positive's weight in d log D / d l_p).

    ``r_share`` is e^{log R - log D} grad / T (consumed). The floor has no gradient
    (``active`` masks it); with debiasing the positive also enters Local through
    - tau |H| P / (1 - tau). Shapes follow ``r_share``.
    """
    coef = r_share
    if loc.active is None:
        return coef, pw
    coef.mul_(loc.active)
    return coef, (loc.active * loc.n_h).mul_(-lam * tau / (1.0 - tau)).add_(pw)


class DenseLocal(NamedTuple):
    """Per-anchor (M, 1) quantities of the local term on the dense path (spec 4.2).

    With A = sum_H e^{b l}, C = sum_H e^{(1+b) l}, R = |H| C / A (the weights
    w = |H| softmax(b l) give sum_H w e^l = |H| C / A) and P = e^{l_p}:
    Local = max((R - tau |H| P) / (1 - tau), |H| e^{-1/T}).
    """

    log_loc: Tensor  # log(lambda Local_i), -inf when H(i) is empty
    log_r: Tensor  # log R_i, -inf when H(i) is empty
    log_a: Tensor  # log A_i (log |H| when beta = 0)
    log_c: Tensor  # log C_i
    n_h: Tensor  # |H(i)|
    active: Tensor | None  # True where the debiased value, not the floor, is used; None: tau = 0

    def saved(self) -> tuple[Tensor, ...]:
        """The tensors backward reads (``active`` only with debiasing)."""
        keep = (self.log_r, self.log_a, self.log_c, self.n_h)
        return keep if self.active is None else (*keep, self.active)

    @staticmethod
    def restore(saved: list[Tensor], debias: bool) -> DenseLocal:
        """Inverse of :meth:`saved` (``log_loc`` is not needed by backward)."""
        log_r, log_a, log_c, n_h, *active = saved
        return DenseLocal(log_r, log_r, log_a, log_c, n_h, active[0] if debias else None)


def _dense_local(
    l_h: Tensor, H: Tensor, lp1: Tensor, beta: float, tau: float, inv_t: float, lam: float
) -> DenseLocal:
    """The local term from the neighbour logits ``l_h`` (M, K) (-inf outside H)."""
    n_h = H.sum(1, keepdim=True, dtype=lp1.dtype)  # (M, 1)
    if lam == 0:  # switched off: nothing of it is read
        return DenseLocal(n_h, n_h, n_h, n_h, n_h, None)
    log_n = n_h.log()  # -inf for an empty H(i): every log below then gives -inf there
    bl = l_h if beta == 1.0 else l_h * beta  # (M, K)
    log_a = bl.logsumexp(1, keepdim=True) if beta > 0 else log_n
    log_c = (l_h + bl if beta > 0 else l_h).logsumexp(1, keepdim=True)
    # log R / |H| (an empty H(i) gives -inf - -inf: 0 stands in, log_n makes it -inf below)
    log_q = (log_c - log_a).nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf)
    log_r = log_q + log_n  # (M, 1)
    if tau == 0:  # no debiasing, no floor
        return DenseLocal(log_r + _log(lam), log_r, log_a, log_c, n_h, None)
    x = (lp1 - log_q).add_(math.log(tau)).exp_()  # tau |H| P / R
    log_loc, active = debias(log_r, log_n, x, tau, inv_t, _log(lam))
    return DenseLocal(log_loc, log_r, log_a, log_c, n_h, active)


def _dense_local_grad(
    l_h: Tensor, loc: DenseLocal, coef: Tensor, beta: float, detach: bool, scale: float
) -> Tensor:
    """scale * coef_i * d log R_i / d l_ij on H (garbage elsewhere: the caller masks). # (M, K)

    d log R / d l_j = (1+b) e^{(1+b) l_j} / C - b e^{b l_j} / A; with detached weights
    only e^{(1+b) l_j} / C remains. Both fractions are <= 1 (no overflow at small T).
    """
    bl = l_h if beta == 1.0 else l_h * beta
    part_c = ((l_h + bl if beta > 0 else l_h) - loc.log_c).exp_()  # (M, K)
    if detach or beta == 0:
        return part_c.mul_(coef * scale)
    part_a = (bl - loc.log_a).exp_().mul_(beta / (1.0 + beta))  # (M, K)
    return part_c.sub_(part_a).mul_(coef * (scale * (1.0 + beta)))


class SparseLocal(NamedTuple):
    """Per-anchor (M,) and per-neighbour (nnz,) quantities of the local term (spec 4.2).

    With the row shift m_h = max_H l and d = l - m_h <= 0: A = sum_H e^{b d} and
    C = sum_H e^{(1+b) d} (both >= 1 where H(i) is not empty: its largest entry gives
    e^0; empty rows hold A = 1, C = 0, never read per neighbour), and R = |H| e^{m_h} C / A.
    m_h may be any value in rows without neighbours (none of them reads it).
    """

    log_loc: Tensor  # (M,) log(lambda Local_i), -inf when H(i) is empty
    log_r: Tensor  # (M,) log R_i, -inf when H(i) is empty
    a: Tensor  # (M,) A_i
    c: Tensor  # (M,) C_i
    n_h: Tensor  # (M,) |H(i)|
    e_b: Tensor  # (nnz,) e^{b d}
    e_1b: Tensor  # (nnz,) e^{(1+b) d}
    active: Tensor | None  # (M,) debiased value in use (bool); None: tau = 0


def _sparse_local(
    l_h: Tensor, rows: Tensor, lp: Tensor, top: Tensor | None, hp: HParams
) -> SparseLocal:
    """The local term from the neighbour logits ``l_h`` (nnz,) of rows ``rows``; ``top``
    (M,) is H(i)'s largest logit in every row with a neighbour, or None."""
    beta, tau, lam, inv_t, _ = hp
    m = lp.shape[0]
    n_h = torch.bincount(rows, minlength=m).to(lp.dtype)  # (M,) (the CPU path: no sync cost)
    m_h = top  # (M,) the shift: max over H(i)
    if m_h is None:
        m_h = lp.new_full((m,), NEG_INF).scatter_reduce_(0, rows, l_h, "amax")
    d = l_h - m_h.index_select(0, rows)  # (nnz,) <= 0
    e_b = d.exp() if beta == 1.0 else (d * beta).exp()  # beta = 0: ones, A = |H|
    e_1b = e_b * e_b if beta == 1.0 else (d * (1.0 + beta)).exp()
    # A >= 1 wherever H(i) is not empty; 1 for empty rows keeps C / A = 0 there (no 0 / 0)
    a = torch.bincount(rows, e_b, minlength=m).clamp_min_(1.0)  # (M,) sums per row
    c = torch.bincount(rows, e_1b, minlength=m)  # 0 for empty rows: log R = -inf there
    log_n = n_h.log()  # -inf for an empty H(i): every log below then gives -inf there
    log_q = (c / a).log_()  # (M,) log(C / A), -inf for empty rows
    log_r = log_q.add(m_h).add_(log_n)  # (M,) log(|H| e^{m_h} C / A)
    if tau == 0:  # no debiasing, no floor
        return SparseLocal(log_r + _log(lam), log_r, a, c, n_h, e_b, e_1b, None)
    # x = tau |H| P / R = tau e^{l_p - m_h} A / C: inf where H(i) is empty (log(C / A) =
    # -inf) or where it overflows, both meaning the floor
    x = (lp - m_h).sub_(log_q).add_(math.log(tau)).exp_()
    log_loc, active = debias(log_r, log_n, x, tau, inv_t, _log(lam))
    return SparseLocal(log_loc, log_r, a, c, n_h, e_b, e_1b, active)


def _sparse_local_grad(
    loc: SparseLocal, rows: Tensor, r_share: Tensor, pw: float, hp: HParams
) -> tuple[Tensor, Tensor | float]:
    """(d L / d s_ij on H (nnz,), the positive's weight in d log D / d l_p).

    ``r_share`` (M,) is e^{log R - log D} grad / T (consumed).
    d log D / d l_j = lambda R / ((1 - tau) D) * d log R / d l_j where the debiased value
    is in use (0 at the floor), with d log R / d l_j = (1+b) e^{(1+b) d_j} / C
    - b e^{b d_j} / A; with detached weights only e^{(1+b) d_j} / C remains. With
    debiasing the positive also enters Local, through - tau |H| P / (1 - tau).
    """
    beta, tau, lam, _, detach = hp
    both = beta > 0 and not detach  # d log R / d l has its 1 / A part
    coef = r_share.mul_(lam / (1.0 - tau) * (1.0 + beta if both else 1.0))  # (M,)
    dpos: Tensor | float = pw
    if loc.active is not None:
        coef.mul_(loc.active)
        dpos = (loc.active * loc.n_h).mul_(-lam * tau / (1.0 - tau)).add_(pw)
    c_part = loc.e_1b * (coef / loc.c).index_select(0, rows)  # (nnz,)
    if not both:
        return c_part, dpos
    a_part = (coef / loc.a).index_select(0, rows)  # (nnz,) (coef carries 1 + b)
    return c_part.addcmul_(loc.e_b, a_part, value=-beta / (1.0 + beta)), dpos


def fused_log_denominator(
    logits: Tensor, lp: Tensor, H: Tensor, pos_weight: Tensor, hp: HParams
) -> tuple[Tensor, Tensor]:
    """log D_i (and log Local_i) as plain differentiable tensor ops, for ``torch.compile``.

    The same function as :class:`_HexLogDenominatorDense` (spec 4.2-4.3), written without
    a custom backward so that a compiler can fuse forward and backward into a few kernels
    (on GPUs the hand-written path is bound by ~220 kernel launches). Fixed shapes only:
    no ``nonzero``, no Python branch on data. Empty H(i) or G(i) rows are computed on
    finite stand-ins and masked afterwards, so no NaN reaches the gradient.

    Shape:
        logits: (M, K) s / T with the positive and self at -inf (with gradients);
        lp: (M,) positive logits; H: (M, K) bool; pos_weight: (M,). Returns (M,), (M,).
    """
    beta, tau, lam, inv_t, detach = hp
    n_h = H.sum(1, dtype=lp.dtype)  # (M,)
    has_h = n_h > 0
    n_safe = n_h.clamp_min(1.0)
    excluded = torch.isinf(logits)  # positive and self
    hs = H | ~has_h[:, None]  # the reduction set; rows without H use finite stand-ins (0)
    l_h = torch.where(hs, torch.where(H, logits, 0.0), NEG_INF)  # (M, K)
    g = logits.masked_fill(H, NEG_INF)  # G(i)
    has_g = ~(H | excluded).all(1)
    log_g = torch.where(has_g, torch.where(has_g[:, None], g, 0.0).logsumexp(1), NEG_INF)
    m_h = l_h.detach().amax(1)  # (M,) a shift only: log_r does not depend on it
    bd = torch.where(hs, beta * (l_h - m_h[:, None]), NEG_INF)
    log_w = bd - bd.logsumexp(1, keepdim=True)  # log softmax(beta l) over H
    log_w = log_w.detach() if detach else log_w
    log_r = n_safe.log() + (l_h + log_w).logsumexp(1)  # log sum_H |H| w_j e^{l_j}
    if tau > 0:
        log_ratio = math.log(tau) + n_safe.log() + lp - log_r
        below = log_ratio < 0
        ratio = torch.where(below, log_ratio, 0.0).exp().masked_fill(~below, 0.0)
        log_raw = torch.where(below, log_r + (-ratio).log1p(), NEG_INF) - math.log1p(-tau)
        log_local = torch.maximum(log_raw, n_safe.log() - inv_t)
    else:
        log_local = log_r
    log_local = torch.where(has_h, log_local, NEG_INF)
    pos = torch.where(pos_weight > 0, pos_weight.clamp_min(1e-30).log() + lp, NEG_INF)
    log_loc = _log(lam) + log_local
    log_d = torch.stack([pos, log_loc, log_g], 1).logsumexp(1)
    return log_d, log_loc.detach()


class HEXDenominator(nn.Module):
    """HEX as the InfoNCE denominator (HEX_SPEC 4, 5).

    Args:
        threshold: name in ``thresholds.THRESHOLDS`` or a ``Threshold`` module.
        variant: ``"paper"`` (spec 4.2-4.3, default) or ``"reference"`` (spec 4.4).
        beta: hardness of the importance weights (>= 0; 0 = uniform).
        tau_plus: debiasing class prior in [0, 1); 0 switches debiasing off.
        lambda_local: weight of the local term (>= 0).
        warmup_epochs: epochs of plain InfoNCE before HEX switches on (spec 5.3).
        detach_weights: stop gradients through the importance weights.
        dense: H as a dense (M, K) mask (no host synchronisation, the GPU path) or in
            sparse form (fewer (M, K) tensors, faster on CPUs); None (default) picks
            dense on every device but the CPU. Both compute the same loss and gradient.
        fused: compute the dense path as plain tensor ops compiled by ``torch.compile``
            (:func:`fused_log_denominator`): forward and backward fused into a few
            kernels instead of ~220 launches; same loss and gradient. Compilation costs
            time once per shape; a compiler failure warns once and runs it eagerly.
        compile_backend: the ``torch.compile`` backend of the fused path.
        threshold_kwargs: passed to the threshold (q, per_anchor, ema, eps0, schedule...).

    Example:
        >>> hexd = HEXDenominator(threshold="adaptive", beta=1.0, tau_plus=0.1)
        >>> hexd.set_progress(12.5)      # epochs done, pushed by the training loop
    """

    epoch: Tensor
    fuses_numerator = True  # contrastive_loss asks for log D_i - s_ip / T (``with_numerator``)

    def __init__(
        self,
        threshold: str | Threshold = "adaptive",
        variant: str = "paper",
        beta: float = 1.0,
        tau_plus: float = 0.1,
        lambda_local: float = 1.0,
        warmup_epochs: float = 0.0,
        detach_weights: bool = False,
        dense: bool | None = None,
        fused: bool = False,
        compile_backend: str = "inductor",
        **threshold_kwargs: Any,
    ) -> None:
        super().__init__()
        _check_hparams(variant, beta, tau_plus, lambda_local, warmup_epochs)
        self.variant, self.beta, self.tau_plus = variant, beta, tau_plus
        self.lambda_local, self.warmup_epochs = lambda_local, warmup_epochs
        self.detach_weights, self.dense, self.fused = (
            detach_weights,
            (True if fused else dense),
            fused,
        )
        self._fused_fn = _compiled(fused_log_denominator, compile_backend) if fused else None
        self.threshold = _make_threshold(threshold, variant, threshold_kwargs)
        # statistics cost ops (GPU launches) and are read at logging steps only: the
        # training loop switches them off in between (SSLMethod.push_record_stats)
        self.record_stats = True
        self.register_buffer("epoch", torch.tensor(0.0, dtype=torch.float64))
        # Host copies of the buffer (reading a GPU buffer would sync). forward reads the
        # float only where the threshold needs progress (fixed schedules) and otherwise
        # the warm-up flag, which changes once: torch.compile guards on what forward reads,
        # and a float that changes every step would recompile the loss at every step.
        self._epoch, self._warm = 0.0, warmup_epochs > 0

    def set_progress(self, epoch: float) -> None:
        """Set training progress in (fractional) epochs; drives schedules and warm-up."""
        self._epoch = float(epoch)
        self._warm = self._epoch < self.warmup_epochs

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        # the buffer follows the host value when saved, not at every step (one op less)
        self.epoch.fill_(self._epoch)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        saved = state_dict.get(prefix + "epoch")
        if isinstance(saved, Tensor):
            self._epoch = float(saved)  # once, at load
            self._warm = self._epoch < self.warmup_epochs

    def end_step(self) -> None:
        """Once per optimiser step: the threshold's EMA advances, except in warm-up."""
        self.threshold.end_step(keep=not self.in_warmup)

    @property
    def in_warmup(self) -> bool:
        """True while the loss is plain InfoNCE (spec 5.3)."""
        return self._warm

    def forward(
        self,
        sim: Tensor,
        temperature: float,
        pos_idx: Tensor,
        self_idx: Tensor | None,
        with_numerator: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """log D_i for every anchor and the spec 8 statistics (only if ``record_stats``).

        ``with_numerator``: return InfoNCE's per-anchor loss log D_i - s_ip / T instead
        (what ``contrastive_loss`` asks for). The hand-written backward then takes the
        numerator's gradient too: autograd differentiates no gather of s_ip, whose
        backward scatters into an (M, K) tensor of zeros and adds it to the gradient.

        Shape:
            sim: (M, K) cosine similarities; pos_idx, self_idx: (M, 1). Returns (M,).
        """
        sim32 = at_least_fp32(sim)
        if self.in_warmup:  # spec 5.3: plain InfoNCE
            lp = positive_logit(sim32, pos_idx, temperature)
            masked = exclude_(sim32 / temperature, pos_idx, self_idx)  # with gradients
            log_d = torch.logaddexp(lp, masked.logsumexp(1))
            out = log_d - lp if with_numerator else log_d
            if not self.record_stats:
                return out, {}
            with torch.no_grad():
                n_h, eps = self._neighbours(sim32, masked.detach(), pos_idx, self_idx, temperature)
            n_neg = sim32.shape[1] - 1 - (self_idx is not None)  # |N(i)|
            return out, _stats(n_h, eps, torch.full_like(log_d, NEG_INF), log_d, n_neg)
        work, lp = work_logits(sim32, temperature, pos_idx, self_idx)  # the one (M, K) buffer
        loss, log_loc, log_d, n_sum, eps = self._denominator(
            sim32, lp, work, pos_idx, self_idx, temperature
        )
        out = loss if with_numerator else loss + positive_logit(sim32, pos_idx, temperature)
        if not self.record_stats:
            return out, {}
        n_neg = sim32.shape[1] - 1 - (self_idx is not None)  # |N(i)|
        return out, _stats(n_sum, eps, log_loc, log_d, n_neg)

    def _dense(self, sim: Tensor) -> bool:
        return self.dense if self.dense is not None else avoid_host_sync(sim.device)

    def _neighbours(
        self, sim32: Tensor, work: Tensor, pos_idx: Tensor, self_idx: Tensor | None, t: float
    ) -> tuple[Tensor, Tensor]:
        """(sum_i |H(i)| as a () tensor, eps) of the threshold, for the warm-up's statistics."""
        epoch = self._epoch if self.threshold.uses_progress else 0.0
        H, eps = self.threshold(sim32, pos_idx, self_idx, epoch, t, work)
        return H.sum(dtype=sim32.dtype), eps

    def _denominator(
        self, sim32: Tensor, lp: Tensor, work: Tensor, pos_idx: Tensor, self_idx: Tensor | None,
        temperature: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:  # fmt: skip
        """(log D - l_p with the gradient of both terms, log lambda Local, log D (no
        gradient), sum_i |H(i)| (None unless recording), eps); ``lp`` holds values only."""
        dense = self._dense(sim32)
        n_neg = sim32.shape[1] - 1 - (self_idx is not None)  # |N(i)|
        epoch = self._epoch if self.threshold.uses_progress else 0.0
        pw, lam = 1.0, self.lambda_local
        if self.variant == "reference":  # spec 4.4: no positive, unless N(i) is empty
            pw, lam = float(n_neg == 0), 0.0
        hp = (self.beta, self.tau_plus, lam, 1.0 / temperature, self.detach_weights)
        if dense:
            H, eps = self.threshold(sim32, pos_idx, self_idx, epoch, temperature, work)
            H = _reference_mask(H, n_neg) if self.variant == "reference" else H
            n_h = H.sum(dtype=sim32.dtype) if self.record_stats else None
            if self._fused_fn is not None:
                logits = exclude_(sim32 / temperature, pos_idx, self_idx)  # with gradients
                lp = positive_logit(sim32, pos_idx, temperature)
                log_d, log_loc = self._fused_fn(logits, lp, H, torch.full_like(lp, pw), hp)
                return log_d - lp, log_loc, log_d.detach(), n_h, eps
            out = _HexLogDenominatorDense.apply(sim32, lp, pos_idx, Workspace(work), H, pw, hp)
            return (*out, n_h, eps)
        flat, eps, top = self.threshold.neighbours(
            sim32, pos_idx, self_idx, epoch, temperature, work
        )
        rows = flat.div(work.shape[1], rounding_mode="floor")  # (nnz,) each entry's anchor
        if self.variant == "reference":
            flat, rows = _reference_sets(flat, rows, lp, n_neg)
        n_h = None
        if self.record_stats:
            n_h = torch.full((), flat.numel(), dtype=sim32.dtype, device=sim32.device)
        out = _HexLogDenominator.apply(sim32, lp, pos_idx, Workspace(work), flat, rows, top, pw, hp)
        return (*out, n_h, eps)


def _compiled(fn: Any, backend: str) -> Any:
    """``torch.compile(fn)``, falling back to ``fn`` (one warning) if compilation fails."""
    compiled = torch.compile(fn, backend=backend, dynamic=False)
    failed = False

    def call(*args: Any) -> Any:
        nonlocal failed
        if not failed:
            try:
                return compiled(*args)
            except Exception as err:  # a missing compiler, an unsupported op: stay eager
                failed = True
                warnings.warn(
                    f"hex.fused: torch.compile failed ({type(err).__name__}); the fused HEX "
                    "path runs eagerly (same values, no speed-up)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return fn(*args)

    return call


def _reference_sets(flat: Tensor, rows: Tensor, lp: Tensor, n_neg: int) -> tuple[Tensor, Tensor]:
    """The reference's denominator is G(i); an empty G(i) falls back to N(i) (spec 4.4).

    The positive is dropped from D (weight 0), except where N(i) itself is empty (then
    D = e^{l_p} and the loss is 0 instead of inf). Returns the kept (flat, rows) of H.
    """
    sizes = torch.bincount(rows, minlength=lp.shape[0])  # (M,) |H(i)|
    keep = sizes[rows] < n_neg  # drop H entirely in rows whose G(i) is empty
    if not bool(keep.all()):
        flat, rows = flat[keep], rows[keep]
    return flat, rows


def _reference_mask(H: Tensor, n_neg: int) -> Tensor:
    """:func:`_reference_sets` on a dense mask: rows with an empty G(i) lose H. # (M, K)"""
    return H & (H.sum(1, keepdim=True) < n_neg)


def _stats(
    n_h: Tensor | None, eps: Tensor, log_loc: Tensor, log_d: Tensor, n_neg: int
) -> dict[str, Tensor]:
    """HEX_SPEC 8 observables, detached; ``n_h`` is sum_i |H(i)| as a () tensor."""
    assert n_h is not None  # computed whenever statistics are recorded
    mean_size = n_h.to(log_d.dtype) / log_d.shape[0]
    log_loc = log_loc.view(log_d.shape)  # the dense path keeps it (M, 1)
    return {
        "eps": eps.detach().float().mean(),
        "neighbours": mean_size,
        "neighbour_frac": mean_size / max(n_neg, 1),
        "local_share": (log_loc - log_d).exp().mean().detach(),
    }


def _check_hparams(
    variant: str, beta: float, tau_plus: float, lambda_local: float, warmup: float
) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {list(VARIANTS)}")
    if beta < 0:
        raise ValueError(f"beta={beta} must be >= 0 (0 gives uniform weights)")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus={tau_plus} is outside [0, 1); 0 switches debiasing off")
    if lambda_local < 0:
        raise ValueError(f"lambda_local={lambda_local} must be >= 0")
    if warmup < 0:
        raise ValueError(f"warmup_epochs={warmup} must be >= 0")


def _make_threshold(threshold: str | Threshold, variant: str, kwargs: dict[str, Any]) -> Threshold:
    """Build the threshold; the reference variant uses the reference's threshold rules."""
    if isinstance(threshold, Threshold):
        if kwargs:
            raise ValueError(f"threshold kwargs {sorted(kwargs)} given with a Threshold object")
        return threshold
    if variant == "reference" and threshold == "adaptive":
        kwargs = {"include_self_positive": True} | kwargs
    if variant == "reference" and threshold == "fixed":
        kwargs = {"minmax": True} | kwargs
    try:
        return build_threshold(threshold, **kwargs)
    except TypeError as err:  # unknown keyword for this threshold
        raise ValueError(f"bad option for threshold {threshold!r}: {err}") from None
