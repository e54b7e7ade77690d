"""HEX's nearest relatives as InfoNCE denominators: decoupled, debiased, hard-negative.

Each is HEX's local term (HEX_SPEC 4.2) applied to *every* negative, or HEX's reference
variant (4.4) with no neighbours (docs/RELATIVES.md). For anchor i, with l_ij = s_ij / T,
N = |N(i)| negatives and the positive logit l_p:

    R_i  = N * sum_{N(i)} softmax(beta l)_j e^{l_ij}           (Robinson et al. 2021)
    Ng_i = max((R_i - tau_plus N e^{l_p}) / (1 - tau_plus), N e^{-1/T})   (Chuang 2020)
    D_i  = pw e^{l_p} + Ng_i

- ``decoupled`` (DCL, Yeh et al. ECCV 2022): pw = 0, beta = 0, tau_plus = 0;
  DCLW also weights the positive term by a von Mises-Fisher weight (``sigma``);
- ``debiased`` (Chuang et al. NeurIPS 2020): pw = 1, beta = 0;
- ``hard`` (HCL, Robinson et al. ICLR 2021): pw = 1, beta and tau_plus.

tau_plus = 0 switches the max() off, as in HEX (HEX_SPEC 4.2), so pw = 1, beta = 0,
tau_plus = 0 is plain InfoNCE. All three share one autograd function with a hand-written
backward that keeps a single (M, K) tensor, like HEX's: no host syncs, sizes from shapes.
Like HEX, they give ``contrastive_loss`` the whole per-anchor loss (``with_numerator``):
the backward writes the positive's gradient too, and autograd differentiates no gather.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.losses.distributed import gather_with_grad
from hexssl.losses.infonce import at_least_fp32, positive_logit, work_logits
from hexssl.run.hostsync import avoid_host_sync

Stats = dict[str, Tensor]
RelParams = tuple[float, float, float, bool]  # positive weight pw, beta, tau_plus, detach


def debias(
    log_r: Tensor, log_n: Tensor, x: Tensor, tau: float, inv_t: float, log_scale: float = 0.0
) -> tuple[Tensor, Tensor]:
    """log(scale * max((R - tau n P) / (1 - tau), n e^{-1/T})), and where the first wins.

    The debiasing of Chuang et al. (2020) with its floor, shared by HEX's local term
    (HEX_SPEC 4.2, n = |H(i)|) and the relatives (n = |N(i)|). From log R, log n and
    ``x`` = tau n P / R (>= 0; inf allowed; consumed): log(R - tau n P) is
    log R + log(1 - x), -inf once x >= 1. Rows with n = 0 (log_n = log_r = -inf) give
    -inf. Returns (M,) values and the (M,) bool mask of rows above the floor.
    """
    log_raw = x.clamp_max_(1.0).neg_().log1p_().add_(log_r)
    log_floor = log_n + (math.log1p(-tau) - inv_t)  # log(n e^{-1/T} (1 - tau))
    active = log_raw > log_floor
    return torch.maximum(log_raw, log_floor).add_(log_scale - math.log1p(-tau)), active


def backward_shares(
    log_d: Tensor, grad_s: Tensor, *logs: Tensor, stack: bool = True
) -> tuple[Tensor, ...]:
    """e^{x - log D} grad / T for each x of ``logs`` (log R, l_p, a shift; shaped as
    ``log_d``), for the hand-written backwards (HEX's and the relatives').

    ``stack``: one stacked exp, four ops (GPU launches) for all of them, where an exp
    per x takes three ops per x; for the GPU code paths. On the CPU the stack and its
    split cost more than the ops they save (HEX's loss 1.008x at 2B = 256, docs/speed.md).
    """
    if not stack or len(logs) == 1:
        return tuple((x - log_d).exp_().mul_(grad_s) for x in logs)
    return torch.stack(logs).sub_(log_d).exp_().mul_(grad_s).unbind(0)


def positive_grad(share: Tensor | None, dpos: Tensor | float, grad_s: Tensor) -> Tensor:
    """d loss / d s_ip of the per-anchor loss log D_i - l_ip: (dpos e^{l_p - log D} - 1)
    grad / T, from ``share`` = e^{l_p - log D} grad / T (consumed; ``backward_shares``).

    ``dpos`` is the positive's weight in d log D / d l_p (its weight pw in D, less the
    debiasing's share); a float ``dpos`` is pw, 0 or 1. Where it is 0, D may lack the
    positive, so the share may be inf (or None, not computed): it is not read.
    ``grad_s`` is grad / T. Shapes follow ``grad_s``; returns (M, 1), ready for
    ``scatter_`` at the positive's column.
    """
    if share is None or not (isinstance(dpos, Tensor) or dpos):
        return grad_s.neg().view(-1, 1)
    return (share.mul_(dpos) if isinstance(dpos, Tensor) else share).sub_(grad_s).view(-1, 1)


class _RelativeLogDenominator(torch.autograd.Function):
    """The per-anchor loss log D_i - l_ip with D_i of the module docstring, with a
    hand-written backward.

    Inputs: ``sim`` (M, K) (only to receive the gradient), ``lp`` (M,) positive logits
    (values only: their gradient goes into the gradient of ``sim`` at ``pos_idx`` (M, 1)),
    ``work`` (M, K) logits with the positive and self at -inf (turned into
    E = e^{l - m} in place: the one (M, K) tensor kept), ``n_neg`` = |N(i)|,
    ``inv_t`` = 1/T, ``hp``.
    Returns the loss (M,), the 0/1 mask (M,) of rows above the debiasing floor and
    log D (M,) (the last two without gradient).
    """

    @staticmethod
    def forward(
        ctx: Any, sim: Tensor, lp: Tensor, pos_idx: Tensor, work: Tensor, n_neg: int,
        inv_t: float, hp: RelParams,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        pw, beta, tau, _ = hp
        n = lp.new_full(lp.shape, float(n_neg))  # (M,) |N(i)|
        m = work.amax(1)  # (M,) finite: every row has a negative (checked by the caller)
        E = work.sub_(m[:, None])  # (M, K) d = l - m, -inf off N(i)
        log_a, log_c = _weight_sums_(E, beta, n)  # E is now e^d, 0 off N(i)
        log_r = n.log() + log_c - log_a + m  # (M,) log R_i
        if tau == 0:  # debiasing off: no max(), Ng = R
            log_ng, above = log_r, torch.ones_like(log_r, dtype=torch.bool)
        else:  # x = tau N P / R
            log_n = n.log()
            x = (lp - log_r).add_(log_n).add_(math.log(tau)).exp_()
            log_ng, above = debias(log_r, log_n, x, tau, inv_t)
        log_d = torch.logaddexp(lp, log_ng) if pw else log_ng  # (M,)
        active = above.to(lp.dtype)
        ctx.save_for_backward(E, lp, pos_idx, log_r, log_a, log_c, log_d, n, active)
        ctx.inv_t, ctx.hp = inv_t, hp
        ctx.mark_non_differentiable(active, log_d)
        ctx.set_materialize_grads(False)  # no zeros for the (absent) gradients of the two
        return log_d - lp, active, log_d

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad: Tensor, _g_active: Tensor, _g_d: Tensor
    ) -> tuple[Tensor | None, ...]:
        if grad is None:  # only the non-differentiable outputs were used
            return (None,) * 7
        E, lp, pos_idx, log_r, log_a, log_c, log_d, n_neg, active = ctx.saved_tensors
        pw, beta, tau, detach = ctx.hp
        grad_s = grad * ctx.inv_t  # d/ds = d/dl / T
        stack = avoid_host_sync(grad.device)  # the GPU code path: fewer launches
        r_share, p_share = backward_shares(log_d, grad_s, log_r, lp, stack=stack)
        # d log D / d log R, times the incoming gradient and 1/T (s = T l)
        coef = r_share.mul_(active).mul_(1.0 / (1.0 - tau))  # (M,)
        g = _log_r_grad(E, coef, log_a, log_c, beta, detach)  # (M, K), 0 at the positive
        # dD/de^{l_p} (M,): pw, less the debiasing's share where it is in use
        dpos = active.mul(-tau / (1.0 - tau)).mul_(n_neg).add_(pw) if tau > 0 else pw
        g.scatter_(1, pos_idx, positive_grad(p_share, dpos, grad_s))
        return g, None, None, None, None, None, None


def _weight_sums_(E: Tensor, beta: float, n_neg: Tensor) -> tuple[Tensor, Tensor]:
    """In place d -> e^d; returns log A = log sum e^{beta d}, log C = log sum e^{(1+beta) d}.

    With w = N softmax(beta l), R = sum w e^l = N e^m C / A (HEX_SPEC 4.2 over all of N(i)).
    """
    if beta == 0:  # uniform weights: A = N
        return n_neg.log(), E.exp_().sum(1).log()
    if beta == 1:  # the papers' beta: e^{2d} = E * E, no second exp pass
        E.exp_()
        return E.sum(1).log(), torch.linalg.vecdot(E, E).log()
    Eb = (E * beta).exp_()  # (M, K) e^{beta d}, transient
    E.exp_()
    return Eb.sum(1).log(), torch.linalg.vecdot(E, Eb).log()


def _log_r_grad(
    E: Tensor, coef: Tensor, log_a: Tensor, log_c: Tensor, beta: float, detach: bool
) -> Tensor:
    """coef_i * d log R_i / d l_ij over N(i); 0 elsewhere (E is 0 there). # (M, K)

    d log R / d l_j = (1+beta) e^{(1+beta) d_j} / C - beta e^{beta d_j} / A, and with
    detached weights only e^{(1+beta) d_j} / C remains (as in HEX's local term).
    """
    c_scale = (coef * (-log_c).exp())[:, None]  # (M, 1)
    if beta == 0:
        return E * c_scale
    Eb = E if beta == 1 else E.pow(beta)  # (M, K) e^{beta d}
    if detach:
        return Eb * E * c_scale
    a_scale = (coef * beta * (-log_a).exp())[:, None]  # (M, 1)
    return Eb * (E * ((1.0 + beta) * c_scale) - a_scale)


class _DenseRelative(nn.Module):
    """Shared forward of the relatives: the hyperparameters pick the member (see module)."""

    positive_weight: float = 1.0
    beta: float = 0.0
    tau_plus: float = 0.0
    detach_weights: bool = False
    record_stats: bool = True  # switched off between logging steps by the training loop
    fuses_numerator = True  # contrastive_loss asks for log D_i - s_ip / T (``with_numerator``)

    def set_progress(self, epoch: float) -> None:
        """Nothing depends on progress here (no warm-up); present for the shared API."""

    def forward(
        self,
        sim: Tensor,
        temperature: float,
        pos_idx: Tensor,
        self_idx: Tensor | None,
        with_numerator: bool = False,
    ) -> tuple[Tensor, Stats]:
        """log D_i for every anchor, or with ``with_numerator`` InfoNCE's per-anchor loss
        log D_i - s_ip / T (``contrastive_loss``'s call: the hand-written backward then
        takes the numerator's gradient too). Shape: sim (M, K); pos_idx, self_idx (M, 1)
        -> (M,)."""
        n_neg = sim.shape[1] - 1 - (self_idx is not None)  # |N(i)|, from the shape
        if n_neg < 1:
            raise ValueError(
                f"{type(self).__name__} needs at least one negative per anchor; got "
                f"{sim.shape[1]} candidates (use a batch of 2 or more)"
            )
        sim32 = at_least_fp32(sim)
        work, lp = work_logits(sim32, temperature, pos_idx, self_idx)  # the one (M, K) buffer
        hp = (self.positive_weight, self.beta, self.tau_plus, self.detach_weights)
        out, active, _ = _RelativeLogDenominator.apply(
            sim32, lp, pos_idx, work, n_neg, 1.0 / temperature, hp
        )
        if not with_numerator:  # log D: add l_p back, with its gradient
            out = out + positive_logit(sim32, pos_idx, temperature)
        return self.finish(sim32, pos_idx, temperature, out, active)

    def finish(
        self, sim: Tensor, pos_idx: Tensor, temperature: float, out: Tensor, active: Tensor
    ) -> tuple[Tensor, Stats]:
        """The returned term and statistics (a subclass may add a positive weighting)."""
        record = self.tau_plus > 0 and self.record_stats
        stats = {"floor_share": 1.0 - active.mean()} if record else {}
        return out, stats


def _check(beta: float = 0.0, tau_plus: float = 0.0, sigma: float | None = None) -> None:
    if beta < 0 or not math.isfinite(beta):
        raise ValueError(f"beta={beta} must be >= 0 (0 gives uniform weights)")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus={tau_plus} is outside [0, 1); 0 switches debiasing off")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma={sigma} must be > 0 (DCLW's paper uses 0.5)")


class DecoupledDenominator(_DenseRelative):
    """DCL: InfoNCE with the positive removed from the denominator (Yeh et al. 2022).

        L_i = -w_i l_ip + log sum_{j in N(i)} e^{l_ij}

    w_i = 1 for DCL. With ``sigma`` set, DCLW's von Mises-Fisher weight
    w_i = 2 - exp(s_ip / sigma) / mean_k exp(s_kp / sigma), the mean over every anchor of
    the batch on every process (arXiv:2110.06848, DCLW). The weight is folded into the
    returned log-term, (1 - w_i) l_ip, so that ``contrastive_loss`` is unchanged.

    Args:
        sigma: DCLW's sigma (> 0; the paper uses 0.5); None (default) gives DCL.
        detach_weights: stop gradients through the DCLW weights (lightly's choice).

    Example:
        >>> from hexssl.losses import DecoupledDenominator, InfoNCE
        >>> loss_fn = InfoNCE(0.1, DecoupledDenominator())
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    positive_weight = 0.0

    def __init__(self, sigma: float | None = None, detach_weights: bool = False) -> None:
        super().__init__()
        _check(sigma=sigma)
        if detach_weights and sigma is None:
            raise ValueError("detach_weights=True needs sigma: plain DCL has no weights to detach")
        self.sigma, self.detach_weights = sigma, detach_weights

    def finish(
        self, sim: Tensor, pos_idx: Tensor, temperature: float, out: Tensor, active: Tensor
    ) -> tuple[Tensor, Stats]:
        if self.sigma is None:
            return out, {}
        pos_sim = sim.gather(1, pos_idx).squeeze(1)  # (M,) with gradients, for the weight
        w = vmf_weights(pos_sim, self.sigma, self.detach_weights)
        return out + (1.0 - w) * (pos_sim / temperature), {}


def vmf_weights(pos_sim: Tensor, sigma: float, detach: bool = False) -> Tensor:
    """DCLW's weights 2 - M softmax(s_p / sigma) over all M anchors of all processes.

    Shape: (M,) positive similarities of this process's anchors -> (M,). Mean 1 over the
    global batch.
    """
    x = pos_sim.detach() if detach else pos_sim
    every = gather_with_grad(x) / sigma  # (world * M,)
    return 2.0 - every.shape[0] * (x / sigma - every.logsumexp(0)).exp()


class DebiasedDenominator(_DenseRelative):
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020, arXiv:2007.00224).

        Ng_i = max((sum_{N(i)} e^{l_ij} - tau_plus N e^{l_ip}) / (1 - tau_plus), N e^{-1/T})
        L_i  = -l_ip + log(e^{l_ip} + Ng_i)

    The floor N e^{-1/T} is the paper's (the smallest value of sum e^{l} for unit
    vectors). tau_plus = 0 is plain InfoNCE. Statistics: ``floor_share``, the share of
    anchors held at the floor.

    Args:
        tau_plus: class prior, the expected share of same-class samples among the
            negatives, in [0, 1) (the paper uses 0.1 on CIFAR-10 and STL-10).

    Example:
        >>> from hexssl.losses import DebiasedDenominator, InfoNCE
        >>> loss_fn = InfoNCE(0.5, DebiasedDenominator(tau_plus=0.1))
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(self, tau_plus: float = 0.1) -> None:
        super().__init__()
        _check(tau_plus=tau_plus)
        self.tau_plus = tau_plus


class HardNegativeDenominator(_DenseRelative):
    """Hard-negative contrastive loss, HCL (Robinson et al., ICLR 2021, arXiv:2010.04592).

        w_ij = N softmax_{N(i)}(beta l)_j,   R_i = sum_{N(i)} w_ij e^{l_ij}
        Ng_i = max((R_i - tau_plus N e^{l_ip}) / (1 - tau_plus), N e^{-1/T})
        L_i  = -l_ip + log(e^{l_ip} + Ng_i)

    This is HEX's local term (HEX_SPEC 4.2) with every negative a neighbour. beta = 0
    gives ``DebiasedDenominator``; beta = 0 and tau_plus = 0 plain InfoNCE. Gradients
    flow through w as in the paper's code (``detach_weights=True`` stops them).

    Args:
        beta: concentration on hard negatives (>= 0; the paper's STL-10 best is 1).
        tau_plus: class prior in [0, 1); 0 switches the debiasing (and its floor) off.
        detach_weights: stop gradients through the importance weights w.

    Example:
        >>> from hexssl.losses import HardNegativeDenominator, InfoNCE
        >>> loss_fn = InfoNCE(0.5, HardNegativeDenominator(beta=1.0, tau_plus=0.1))
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self, beta: float = 1.0, tau_plus: float = 0.1, detach_weights: bool = False
    ) -> None:
        super().__init__()
        _check(beta=beta, tau_plus=tau_plus)
        self.beta, self.tau_plus, self.detach_weights = beta, tau_plus, detach_weights


# name -> class; the config's ``loss.denominator`` (hexssl.run.build) resolves names here
RELATIVES: dict[str, type[_DenseRelative]] = {
    "decoupled": DecoupledDenominator,
    "debiased": DebiasedDenominator,
    "hard": HardNegativeDenominator,
}
