"""HEX: the split InfoNCE denominator (HEX_SPEC 4). The only place the HEX maths lives.

For anchor i with logits l_ij = s_ij / T, the denominator is

    D_i = pw_i * exp(l_ip) + lambda * Local_i + sum_{j in G(i)} exp(l_ij)

with Local_i the importance-weighted, optionally debiased sum over the neighbours H(i)
(spec 4.2). ``variant="paper"`` uses pw = 1; ``variant="reference"`` reproduces the
authors' code (spec 4.4): pw = 0 and lambda = 0, i.e. positive and neighbours removed.

Memory: the forward keeps the logits (which InfoNCE keeps too), one int8 role mask
(M, K) and a few (M,) vectors; backward recomputes the exponentials from them. The
gradient is written out by hand (``_HexLogDenominator.backward``) and checked against
autograd of the naive formula by gradcheck in the tests.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.losses.thresholds import Threshold, build_threshold

NEG_INF = float("-inf")
EXCLUDED, POSITIVE, GLOBAL, LOCAL = 0, 1, 2, 3  # values of the role mask
VARIANTS = ("paper", "reference")


def role_mask(H: Tensor, pos_idx: Tensor, self_idx: Tensor | None) -> Tensor:
    """Encode self / positive / G(i) / H(i) in one int8 mask. # (M, K)"""
    roles = H.to(torch.int8).add_(GLOBAL)  # H -> LOCAL, rest -> GLOBAL
    roles.scatter_(1, pos_idx, POSITIVE)
    if self_idx is not None:
        roles.scatter_(1, self_idx, EXCLUDED)
    return roles


def _log(x: float) -> float:
    return math.log(x) if x > 0 else NEG_INF


class _HexLogDenominator(torch.autograd.Function):
    """log D_i of HEX_SPEC 4.3 with a hand-written backward. Shapes in ``forward``."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,  # (M, K) fp32, s / T
        roles: Tensor,  # (M, K) int8
        pos_idx: Tensor,  # (M, 1)
        pos_weight: Tensor,  # (M,) 0 or 1
        hp: tuple[float, float, float, float, bool],  # beta, tau_plus, lambda, 1/T, detach
    ) -> tuple[Tensor, Tensor]:
        beta, tau, lam, inv_t, _ = hp
        lp = logits.gather(1, pos_idx).squeeze(1)  # (M,)
        log_g = logits.masked_fill(roles != GLOBAL, NEG_INF).logsumexp(1)  # (M,)
        local = _local_forward(logits, roles, lp, beta, tau, inv_t, lam)
        log_pos = pos_weight.log() + lp  # (M,)
        log_loc = _log(lam) + local["log_local"]  # (M,)
        log_d = torch.stack([log_pos, log_loc, log_g], 1).logsumexp(1)  # (M,)
        ctx.save_for_backward(logits, roles, pos_idx, pos_weight, log_d, *local.values())
        ctx.hp = hp
        ctx.mark_non_differentiable(log_loc)
        return log_d, log_loc

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_d: Tensor, _grad_loc: Tensor) -> tuple[Tensor | None, ...]:
        logits, roles, pos_idx, pos_weight, log_d, _log_local, m_h, log_a, log_c, log_r, active = (
            ctx.saved_tensors
        )
        beta, tau, lam, _, detach = ctx.hp
        g = torch.where(roles == GLOBAL, (logits - log_d[:, None]).exp(), 0.0)  # (M, K)
        if lam > 0:
            coef = _local_coef(log_r, log_d, active, lam, tau)  # (M,)
            g += _local_grad(logits, roles, m_h, log_a, log_c, coef, beta, detach)
        n_h = (roles == LOCAL).sum(1).to(logits.dtype)  # (M,)
        dpos = (
            pos_weight - active.to(logits.dtype) * (lam * tau / (1.0 - tau)) * n_h
        )  # d(D/P)/dP, spec 4.2
        g.scatter_add_(
            1, pos_idx, ((log_d.neg() + logits.gather(1, pos_idx).squeeze(1)).exp() * dpos)[:, None]
        )
        return g * grad_d[:, None], None, None, None, None


def _local_forward(
    logits: Tensor, roles: Tensor, lp: Tensor, beta: float, tau: float, inv_t: float, lam: float
) -> dict[str, Tensor]:
    """log Local_i and the per-row quantities its gradient needs (HEX_SPEC 4.2)."""
    is_h = roles == LOCAL  # (M, K)
    n_h = is_h.sum(1).to(logits.dtype)  # (M,)
    has_h = n_h > 0
    if lam == 0:  # the local term is switched off: skip its M x K work
        ninf = torch.full_like(lp, NEG_INF)
        return dict(
            log_local=ninf,
            m_h=lp * 0,
            log_a=ninf,
            log_c=ninf,
            log_r=ninf,
            active=torch.zeros_like(lp),
        )
    l_h = logits.masked_fill(~is_h, NEG_INF)  # (M, K)
    m_h = torch.where(has_h, l_h.amax(1), 0.0)  # (M,) row max over H, for stability
    d_h = l_h - m_h[:, None]  # (M, K) <= 0 on H, -inf elsewhere
    log_a = (beta * d_h).logsumexp(1) if beta > 0 else n_h.log()  # log sum_H e^{b d}
    log_c = ((1.0 + beta) * d_h).logsumexp(1)  # log sum_H e^{(1+b) d}
    log_a, log_c = torch.where(has_h, log_a, 0.0), torch.where(has_h, log_c, 0.0)  # no NaN
    log_r = n_h.log() + log_c - log_a + m_h  # R_i = sum_H w_ij e^{l_ij}, w mean 1
    log_local, active = _debias(log_r, lp, n_h, tau, inv_t)
    log_local = torch.where(has_h, log_local, NEG_INF)  # Local_i = 0 for empty H(i)
    return dict(
        log_local=log_local, m_h=m_h, log_a=log_a, log_c=log_c, log_r=log_r, active=active & has_h
    )


def _debias(
    log_r: Tensor, lp: Tensor, n_h: Tensor, tau: float, inv_t: float
) -> tuple[Tensor, Tensor]:
    """max((R - tau |H| e^{l_p}) / (1 - tau), |H| e^{-1/T}) in log space (Chuang 2020)."""
    if tau == 0:  # debiasing off: no max(), Local = R
        return log_r, torch.ones_like(log_r, dtype=torch.bool)
    log_ratio = math.log(tau) + n_h.log() + lp - log_r  # log(tau |H| P / R)  (M,)
    ratio = log_ratio.clamp_max(0.0).exp()
    log_raw = torch.where(log_ratio < 0, log_r + (-ratio).log1p(), NEG_INF) - math.log1p(
        -tau
    )  # (M,)
    log_floor = n_h.log() - inv_t
    active = log_raw > log_floor
    return torch.maximum(log_raw, log_floor), active


def _local_coef(log_r: Tensor, log_d: Tensor, active: Tensor, lam: float, tau: float) -> Tensor:
    """lambda * dLocal/dR * R / D per anchor. # (M,)"""
    scale = lam / (1.0 - tau)
    return torch.where(active, scale * (log_r - log_d).exp(), 0.0)


def _local_grad(
    logits: Tensor,
    roles: Tensor,
    m_h: Tensor,
    log_a: Tensor,
    log_c: Tensor,
    coef: Tensor,
    beta: float,
    detach: bool,
) -> Tensor:
    """coef_i * d log R_i / d l_ij on H(i), zero elsewhere. # (M, K)

    R = |H| C / A with C = sum e^{(1+b) d}, A = sum e^{b d}; so
    dR/dl_j / R = (1+b) e^{(1+b) d_j} / C - b e^{b d_j} / A, and with detached
    weights only the first part without the (1+b) factor.
    """
    d_h = (logits - m_h[:, None]).masked_fill(roles != LOCAL, NEG_INF)  # (M, K)
    part_c = ((1.0 + beta) * d_h - log_c[:, None]).exp()  # (M, K)
    if detach:
        return part_c * coef[:, None]
    grad = part_c * (1.0 + beta)
    if beta > 0:
        grad -= beta * (beta * d_h - log_a[:, None]).exp()
    return grad * coef[:, None]


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
        threshold_kwargs: passed to the threshold (q, per_anchor, ema, eps0, schedule...).

    Example:
        >>> hexd = HEXDenominator(threshold="adaptive", beta=1.0, tau_plus=0.1)
        >>> hexd.set_progress(12.5)      # epochs done, pushed by the training loop
    """

    epoch: Tensor

    def __init__(
        self,
        threshold: str | Threshold = "adaptive",
        variant: str = "paper",
        beta: float = 1.0,
        tau_plus: float = 0.1,
        lambda_local: float = 1.0,
        warmup_epochs: float = 0.0,
        detach_weights: bool = False,
        **threshold_kwargs: Any,
    ) -> None:
        super().__init__()
        _check_hparams(variant, beta, tau_plus, lambda_local, warmup_epochs)
        self.variant, self.beta, self.tau_plus = variant, beta, tau_plus
        self.lambda_local, self.warmup_epochs = lambda_local, warmup_epochs
        self.detach_weights = detach_weights
        self.threshold = _make_threshold(threshold, variant, threshold_kwargs)
        self.register_buffer("epoch", torch.tensor(0.0, dtype=torch.float64))

    def set_progress(self, epoch: float) -> None:
        """Set training progress in (fractional) epochs; drives schedules and warm-up."""
        self.epoch.fill_(float(epoch))

    @property
    def in_warmup(self) -> bool:
        """True while the loss is plain InfoNCE (spec 5.3)."""
        return float(self.epoch) < self.warmup_epochs

    def forward(
        self, sim: Tensor, temperature: float, pos_idx: Tensor, self_idx: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """log D_i for every anchor and the spec 8 statistics.

        Shape:
            sim: (M, K) cosine similarities; pos_idx, self_idx: (M, 1). Returns (M,).
        """
        H, eps = self.threshold(sim, pos_idx, self_idx, float(self.epoch))
        logits = at_least_fp32(sim) / temperature  # (M, K)
        if self.in_warmup:
            log_d = plain_log_denominator(logits, self_idx)
            return log_d, _stats(H, eps, log_d.new_full(log_d.shape, NEG_INF), log_d, self_idx)
        roles = role_mask(H, pos_idx, self_idx)
        pos_weight = logits.new_ones(logits.shape[0])
        lam = self.lambda_local
        if self.variant == "reference":
            pos_weight = _reference_pos(roles).to(logits.dtype)
            roles, lam = _reference_roles(roles), 0.0
        hp = (self.beta, self.tau_plus, lam, 1.0 / temperature, self.detach_weights)
        log_d, log_loc = _HexLogDenominator.apply(logits, roles, pos_idx, pos_weight, hp)
        return log_d, _stats(H, eps, log_loc, log_d, self_idx)


def at_least_fp32(x: Tensor) -> Tensor:
    """Half-precision similarities are promoted; float64 stays (gradcheck)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def plain_log_denominator(logits: Tensor, self_idx: Tensor | None) -> Tensor:
    """log(e^{l_ip} + sum_{N(i)} e^{l_ij}): InfoNCE's denominator (HEX_SPEC 3). # (M,)"""
    if self_idx is not None:
        logits = logits.scatter(1, self_idx, NEG_INF)  # (M, K)
    return logits.logsumexp(1)


def _reference_roles(roles: Tensor) -> Tensor:
    """Rows whose G(i) is empty fall back to N(i) (spec 4.4): their H becomes G."""
    empty_g = ~(roles == GLOBAL).any(1, keepdim=True)  # (M, 1)
    return torch.where(empty_g & (roles == LOCAL), GLOBAL, roles).to(torch.int8)


def _reference_pos(roles: Tensor) -> Tensor:
    """The reference drops the positive from D; keep it only where N(i) is empty."""
    empty_n = ~(roles >= GLOBAL).any(1)  # (M,)
    return empty_n.to(torch.float32)


def _stats(
    H: Tensor, eps: Tensor, log_loc: Tensor, log_d: Tensor, self_idx: Tensor | None
) -> dict[str, Tensor]:
    """HEX_SPEC 8 observables, detached; no extra pass over (M, K) beyond a count."""
    n_neg = H.shape[1] - 1 - (self_idx is not None)
    size = H.sum(1).float()  # (M,)
    return {
        "eps": eps.detach().float().mean(),
        "neighbours": size.mean(),
        "neighbour_frac": size.mean() / max(n_neg, 1),
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
