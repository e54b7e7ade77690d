"""Neighbour thresholds eps for HEX (HEX_SPEC 5, i.e. ``docs/hex.md`` section 5).

A threshold turns a similarity matrix into the hierarchical-neighbour mask H. Every rule
is a pure function of (detached similarities, training progress); the only state is the
optional EMA of the adaptive threshold, which lives in a buffer so that it is saved and
restored with the model.

Index conventions shared by all losses: ``pos_idx`` (M, 1) holds the column of each
anchor's positive, ``self_idx`` (M, 1) the column of the anchor itself when anchors are
also candidates (else ``None``). N(i) is every column except those two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from hexssl.losses.distributed import gather_no_grad, global_mean

NEG_INF = float("-inf")


# ---------------------------------------------------------------- fixed schedules (5.2)
def constant_schedule(epoch: float, eps0: float, **_: Any) -> float:
    """eps(t) = eps0."""
    return eps0


def step_schedule(
    epoch: float, eps0: float, step_down: float, epoch_step: float, eps_min: float, **_: Any
) -> float:
    """eps0 - step_down * floor(epoch / epoch_step), floored at eps_min (HEX_SPEC 5.2)."""
    return max(eps0 - step_down * math.floor(epoch / epoch_step), eps_min)


def cosine_schedule(
    epoch: float, eps0: float, eps_min: float, max_epochs: float | None, **_: Any
) -> float:
    """eps_min + (eps0 - eps_min) * (1 + cos(pi * progress)) / 2 (HEX_SPEC 5.2)."""
    if max_epochs is None:
        raise ValueError("schedule='cosine' needs max_epochs (the length of training)")
    progress = min(max(epoch / max_epochs, 0.0), 1.0)
    return eps_min + (eps0 - eps_min) * (1.0 + math.cos(math.pi * progress)) / 2.0


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant_schedule,
    "step": step_schedule,
    "cosine": cosine_schedule,
}


# ------------------------------------------------------------------- shared helpers
def exclusion_fill(sim: Tensor, pos_idx: Tensor, self_idx: Tensor | None, value: float) -> Tensor:
    """Copy of ``sim`` with the positive and self columns set to ``value``.  # (M, K)"""
    out = sim.scatter(1, pos_idx, value)
    return out if self_idx is None else out.scatter_(1, self_idx, value)


def nearest_rank(n: int, q: float) -> int:
    """0-based index of the q-quantile of n sorted values, torch.quantile 'nearest' rule.

    torch rounds half to even, as Python's ``round`` does.
    """
    return round(q * (n - 1))


def row_quantile(values: Tensor, n_valid: int, q: float) -> Tensor:
    """Exact nearest-rank q-quantile of each row's ``n_valid`` finite entries.

    Excluded entries must hold -inf. An exact k-th value selection (:func:`kth_largest`)
    instead of sorting whole rows. Shape: (M, K) -> (M,).
    """
    if n_valid <= 0:  # N(i) is empty: no neighbour can exist, eps = 1 keeps H empty
        return values.new_ones(values.shape[0])
    k = n_valid - nearest_rank(n_valid, q)  # rank counted from the top, 1-based
    return kth_largest(values, k)


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry of each row (1-based), exactly (all three give one value).

    On accelerators ``kthvalue`` (the (K - k + 1)-th smallest): one op, on CUDA one
    radix-select kernel per row, where a sorted top-k of a large k takes a multi-block
    sort path. CUDA has no deterministic ``kthvalue``, so under
    ``torch.use_deterministic_algorithms`` an unsorted top-k and its minimum. On the CPU
    a top-k of the (small) k: faster there than ``kthvalue``'s copy and quickselect.
    Shape: (M, K) -> (M,).
    """
    if values.device.type == "cpu":
        return values.topk(k, dim=1).values[:, -1]
    if values.is_cuda and torch.are_deterministic_algorithms_enabled():
        return values.topk(k, dim=1, sorted=False).values.amin(1)
    return values.kthvalue(values.shape[1] - k + 1, dim=1).values


def minmax_rows(sim: Tensor) -> Tensor:
    """(s - min) / (max - min) per row, self included (the reference code). # (M, K)"""
    lo, hi = sim.aminmax(dim=1, keepdim=True)
    return (sim - lo) / (hi - lo).clamp_min(1e-12)


def drop_excluded(mask: Tensor, pos_idx: Tensor, self_idx: Tensor | None) -> Tensor:
    """Clear the positive and self columns of ``mask`` in place: what is left is in N(i)."""
    mask.scatter_(1, pos_idx, False)
    return mask if self_idx is None else mask.scatter_(1, self_idx, False)


def mask_above(sim: Tensor, eps: Tensor, pos_idx: Tensor, self_idx: Tensor | None) -> Tensor:
    """H = { j in N(i) : s_ij > eps } as a boolean mask (HEX_SPEC 4.1). # (M, K)"""
    return drop_excluded(sim > eps, pos_idx, self_idx)


# ------------------------------------------------------------------------ thresholds
class Threshold(nn.Module):
    """Base class: decides the neighbour mask H from similarities and progress.

    Subclasses implement :meth:`logit_threshold`, working on ``masked``: the logits
    s / T of the batch with the positive and self columns at -inf, which the HEX loss
    builds anyway. Thresholding there needs no extra copy of the (M, K) matrix.
    ``uses_progress``: whether the threshold reads the training progress (``epoch``);
    those that do not are passed 0.0, so that a compiled loss does not depend on it.
    """

    uses_progress: ClassVar[bool] = True

    def end_step(self, keep: bool = True) -> None:
        """Called once per optimiser step; stateful thresholds commit their state here."""

    def logit_threshold(
        self, masked: Tensor, sim: Tensor, temperature: float, epoch: float, n_valid: int
    ) -> Tensor:
        """eps / T, a scalar () or per-anchor (M, 1); ``n_valid`` = |N(i)|."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(
        self,
        sim: Tensor,
        pos_idx: Tensor,
        self_idx: Tensor | None,
        epoch: float,
        temperature: float = 1.0,
        masked: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return (H mask (M, K) bool, eps in cosine units) for similarities ``sim`` (M, K).

        ``masked`` (optional) is ``sim / temperature`` with the positive and self at -inf.
        """
        sim, masked = _prepare(sim, pos_idx, self_idx, temperature, masked)
        return self.mask(sim, masked, pos_idx, self_idx, temperature, epoch)

    def mask(
        self, sim: Tensor, masked: Tensor, pos_idx: Tensor, self_idx: Tensor | None,
        temperature: float, epoch: float,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """(H (M, K) bool, eps): entries of ``masked`` above the threshold."""
        n_valid = negatives_count(sim, self_idx)
        eps_logit, eps = self.thresholds(masked, sim, temperature, epoch, n_valid)
        return masked > eps_logit, eps

    def thresholds(
        self, masked: Tensor, sim: Tensor, temperature: float, epoch: float, n_valid: int
    ) -> tuple[Tensor, Tensor]:
        """(eps / T as :meth:`logit_threshold` gives it, eps in cosine units)."""
        eps_logit = self.logit_threshold(masked, sim, temperature, epoch, n_valid)
        return eps_logit, eps_logit * temperature

    @torch.no_grad()
    def neighbours(
        self,
        sim: Tensor,
        pos_idx: Tensor,
        self_idx: Tensor | None,
        epoch: float,
        temperature: float = 1.0,
        masked: Tensor | None = None,
    ) -> SparseH:
        """H in sparse form (:class:`SparseH`): the same sets as ``forward``."""
        H, eps = self(sim, pos_idx, self_idx, epoch, temperature, masked)
        return SparseH(_flat_nonzero(H), eps, None)


class SparseH(NamedTuple):
    """H(i) in sparse form, as :meth:`Threshold.neighbours` gives it."""

    flat: Tensor  # (nnz,) positions r * K + c of H's entries in the (M, K) matrix
    eps: Tensor  # the threshold, in cosine units
    # (M,) each row's largest masked logit, where the rule has it at no cost (its top-k),
    # else None. A row with a neighbour has its largest logit in H(i): H holds every
    # entry above the threshold, the row's largest among them.
    top: Tensor | None


def _flat_nonzero(mask: Tensor) -> Tensor:
    """Positions r * K + c of the True entries of ``mask``, ascending. (M, K) -> (nnz,)"""
    return mask.view(-1).nonzero().view(-1)


def _prepare(
    sim: Tensor, pos_idx: Tensor, self_idx: Tensor | None, temperature: float,
    masked: Tensor | None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Detached similarities in at least fp32 (HEX_SPEC 5) and the masked logits."""
    sim = sim.float() if sim.dtype in (torch.float16, torch.bfloat16) else sim
    if masked is None:
        masked = exclusion_fill(sim / temperature, pos_idx, self_idx, NEG_INF)
    return sim, masked  # no detach: the callers run under no_grad


def negatives_count(sim: Tensor, self_idx: Tensor | None) -> int:
    """|N(i)|: every candidate but the positive and, when anchors are candidates, self."""
    return sim.shape[1] - 1 - (self_idx is not None)


BLOCK = 8  # block size of the two-stage top-k
TWO_STAGE_MIN_WIDTH = 4096  # narrower rows: one top-k and one mask are cheaper


def top_candidates(x: Tensor, k: int) -> tuple[Tensor, Tensor, Callable[[Tensor], bool]]:
    """A few columns per row that surely hold its k largest values, and more.

    Rows are cut into blocks of ``BLOCK``; the k largest values of a row lie in its k
    blocks with the largest maxima (any value outside them is beaten by k block maxima).
    We keep the top 2k + 4 blocks, so the candidates (M, C) also hold every value above
    a threshold t unless a kept block's maximum still exceeds t (``complete(t)`` checks).
    Cost: one cheap max-pool pass and top-k on K / 8 block maxima instead of on K values.

    Returns (candidate values (M, C), their column indices (M, C), complete).
    """
    m, width = x.shape
    n_keep = 2 * k + 4
    if width % BLOCK or n_keep * BLOCK >= width:  # small or ragged rows: the whole row
        cols = torch.arange(width, device=x.device).expand(m, width)
        return x, cols, lambda t: True
    blocks = x.view(m, width // BLOCK, BLOCK)  # (M, K/8, 8)
    bmax, bidx = blocks.amax(2).topk(n_keep, dim=1)  # (M, n_keep) sorted
    offs = torch.arange(BLOCK, device=x.device)
    cols = (bidx[:, :, None] * BLOCK + offs).reshape(m, -1)  # (M, n_keep * 8)
    return x.gather(1, cols), cols, lambda t: not bool((bmax[:, -1:] > t).any())


class AdaptiveThreshold(Threshold):
    """eps = mean_i quantile_q({s_ij : j in N(i)}) (HEX_SPEC 5.1).

    Args:
        q: quantile in (0, 1); 0.99 keeps roughly the top 1 % of negatives.
        per_anchor: use each anchor's own quantile instead of the batch mean.
        ema: momentum of an exponential moving average over steps (0 disables it).
        include_self_positive: take the quantile over the full row, self and positive
            included, as the authors' code does (spec 4.4).

    Example:
        >>> thr = AdaptiveThreshold(q=0.99)
        >>> sim = torch.randn(8, 8).clamp(-1, 1)
        >>> H, eps = thr(sim, torch.arange(8).roll(4)[:, None], torch.arange(8)[:, None], 0.0)
    """

    ema_value: Tensor
    uses_progress = False

    def __init__(
        self,
        q: float = 0.99,
        per_anchor: bool = False,
        ema: float = 0.0,
        include_self_positive: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < q < 1.0:
            raise ValueError(f"q={q} is outside (0, 1); use e.g. q=0.99")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema={ema} is outside [0, 1); 0 disables the moving average")
        if per_anchor and ema > 0:
            raise ValueError("ema applies to the batch-mean threshold; set per_anchor=False")
        self.q, self.per_anchor, self.ema = q, per_anchor, ema
        self.include_self_positive = include_self_positive
        self.register_buffer("ema_value", torch.tensor(float("nan")))
        self._pending: list[Tensor] = []  # this step's batch thresholds, not yet committed

    def logit_threshold(
        self, masked: Tensor, sim: Tensor, temperature: float, epoch: float, n_valid: int
    ) -> Tensor:
        return self.thresholds(masked, sim, temperature, epoch, n_valid)[0]

    def thresholds(
        self, masked: Tensor, sim: Tensor, temperature: float, epoch: float, n_valid: int
    ) -> tuple[Tensor, Tensor]:
        if self.include_self_positive:  # the reference: full row, self and positive in
            per_row = row_quantile(sim, sim.shape[1], self.q) / temperature  # (M,)
        else:
            per_row = row_quantile(masked, n_valid, self.q)  # (M,)
        return self._combine(per_row, temperature)

    def _combine(self, per_row: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """(eps / T, eps): per anchor (M, 1), or the (smoothed) mean over all anchors and
        processes ()."""
        if self.per_anchor:
            eps_logit = per_row[:, None]  # (M, 1)
            return eps_logit, eps_logit * temperature
        eps_logit = global_mean(per_row)  # ()
        if self.ema == 0.0:  # two ops: a training step between logging steps runs this
            return eps_logit, eps_logit * temperature
        eps = self._smooth(eps_logit * temperature)
        return eps / temperature, eps

    @torch.no_grad()
    def neighbours(
        self,
        sim: Tensor,
        pos_idx: Tensor,
        self_idx: Tensor | None,
        epoch: float,
        temperature: float = 1.0,
        masked: Tensor | None = None,
    ) -> SparseH:
        """Sparse H (see ``Threshold.neighbours``) with each row's largest logit: one top-k
        for narrow rows, a two-stage top-k for wide rows (no (M, K) mask and no dense
        nonzero()).

        The candidate blocks of :func:`top_candidates` hold each row's k-th value (the
        quantile) and, unless some row has more neighbours than they cover, every entry
        above eps; otherwise this falls back to the dense mask.
        """
        n = negatives_count(sim, self_idx) if masked is not None else -1
        if self.include_self_positive or masked is None or n <= 0:
            return super().neighbours(sim, pos_idx, self_idx, epoch, temperature, masked)
        k = n - nearest_rank(n, self.q)  # rank of the quantile from the top, 1-based
        wide = sim.shape[1] >= TWO_STAGE_MIN_WIDTH  # narrow rows: one top-k and one mask
        cand, cols_of, complete = top_candidates(masked, k) if wide else (masked, None, None)
        top = cand.topk(k, dim=1).values  # (M, k) exact k largest of N(i)
        eps_l, eps = self._combine(top[:, -1], temperature)
        # a row with neighbours outside the candidates (or narrow rows): the dense mask
        if cols_of is None or complete is None or not complete(eps_l):
            return SparseH(_flat_nonzero(masked > eps_l), eps, top[:, 0])
        rows, j = (cand > eps_l).nonzero(as_tuple=True)
        return SparseH(rows * masked.shape[1] + cols_of[rows, j], eps, top[:, 0])

    def _smooth(self, eps: Tensor) -> Tensor:
        """ema * (the value committed at the last step) + (1 - ema) * this batch's eps.

        Every call of a step sees the same committed value; the calls' eps are pooled
        and committed once per optimiser step by :meth:`end_step` (issue 10).
        """
        if self.ema == 0.0:
            return eps
        prev = self.ema_value  # NaN until the first commit; torch.where keeps this sync-free
        if not self.training:
            return torch.where(torch.isnan(prev), eps, prev)
        self._pending.append(eps.detach())
        return torch.where(torch.isnan(prev), eps, self.ema * prev + (1.0 - self.ema) * eps)

    def end_step(self, keep: bool = True) -> None:
        """Fold this step's batch thresholds into the EMA (``keep=False`` drops them)."""
        if keep and self._pending:
            eps = torch.stack(self._pending).mean()
            prev = self.ema_value
            self.ema_value.copy_(
                torch.where(torch.isnan(prev), eps, self.ema * prev + (1 - self.ema) * eps)
            )
        self._pending.clear()


class FixedThreshold(Threshold):
    """eps(t) from a schedule of training progress (HEX_SPEC 5.2).

    Args:
        eps0: starting threshold.
        schedule: one of ``SCHEDULES`` (constant, step, cosine).
        step_down, epoch_step: the step schedule's decrement and period (epochs).
        eps_min: floor of the step schedule and end point of the cosine schedule.
        max_epochs: training length, needed by the cosine schedule.
        minmax: compare eps with row-wise min-max normalised similarities, as the
            authors' code does (spec 4.4).

    Example:
        >>> FixedThreshold(0.9, "step", step_down=0.1, epoch_step=100).value(250.0)
        0.7
    """

    def __init__(
        self,
        eps0: float = 0.9,
        schedule: str = "constant",
        step_down: float = 0.1,
        epoch_step: float = 100.0,
        eps_min: float = 0.3,
        max_epochs: float | None = None,
        minmax: bool = False,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid: {sorted(SCHEDULES)}")
        if epoch_step <= 0:
            raise ValueError(f"epoch_step={epoch_step} must be > 0")
        if schedule == "cosine" and max_epochs is None:
            raise ValueError("schedule='cosine' needs max_epochs (the length of training)")
        self.schedule = schedule
        self.params: dict[str, float | None] = dict(
            eps0=eps0,
            step_down=step_down,
            epoch_step=epoch_step,
            eps_min=eps_min,
            max_epochs=max_epochs,
        )
        self.minmax = minmax

    def value(self, epoch: float) -> float:
        """eps at ``epoch`` (a float: fractional epochs are allowed)."""
        return round(SCHEDULES[self.schedule](epoch, **self.params), 12)

    def logit_threshold(
        self, masked: Tensor, sim: Tensor, temperature: float, epoch: float, n_valid: int
    ) -> Tensor:
        return masked.new_full((), self.value(epoch) / temperature)  # no host-device copy

    def mask(
        self, sim: Tensor, masked: Tensor, pos_idx: Tensor, self_idx: Tensor | None,
        temperature: float, epoch: float,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        if not self.minmax:
            return super().mask(sim, masked, pos_idx, self_idx, temperature, epoch)
        eps = sim.new_full((), self.value(epoch))
        return mask_above(minmax_rows(sim), eps, pos_idx, self_idx), eps


class SuperclassOracle(Threshold):
    """H(i) = negatives sharing the anchor's ground-truth superclass (HEX_SPEC 6).

    USES LABELS: an upper bound for analysis, never a self-supervised result. Labels
    arrive before each forward by a hook, as training progress does: the training step
    calls :meth:`set_batch_labels` with the batch's superclass labels (B,) (through
    ``SSLMethod.push_labels``), and the anchors' and candidates' labels follow from the
    pairing's shapes (M = r * B stacked views; K = M, or the M of every process under
    data parallelism). :meth:`set_labels` gives both explicitly instead.
    """

    uses_progress = False

    def __init__(self) -> None:
        super().__init__()
        self._labels: tuple[Tensor, Tensor] | None = None
        self._batch: Tensor | None = None

    def set_labels(self, anchor_labels: Tensor, candidate_labels: Tensor) -> None:
        """Superclass labels of the anchors (M,) and the candidates (K,); -1 = unknown."""
        self._labels, self._batch = (anchor_labels, candidate_labels), None

    def set_batch_labels(self, labels: Tensor) -> None:
        """The hook: superclass labels (B,) of this process's batch; -1 = unknown."""
        self._labels, self._batch = None, labels

    def _pair_labels(self, sim: Tensor) -> tuple[Tensor, Tensor]:
        """(anchor (M,), candidate (K,)) labels of ``sim`` (M, K), from the batch's labels."""
        if self._labels is not None:
            return self._labels
        if self._batch is None:
            raise RuntimeError("SuperclassOracle needs labels before the loss (set_batch_labels)")
        m, k, b = sim.shape[0], sim.shape[1], self._batch.shape[0]
        if b == 0 or m % b:
            raise ValueError(f"oracle: {m} anchors are not whole views of a batch of {b}")
        anchors = self._batch.repeat(m // b)  # (M,): views stacked as [view 0; view 1; ...]
        cands = anchors if k == m else gather_no_grad(anchors)  # (K,)
        if cands.shape[0] != k:
            raise ValueError(
                "the superclass oracle needs superclass labels and no queue of negatives "
                f"({k} candidates for {m} anchors)"
            )
        return anchors, cands

    def mask(
        self, sim: Tensor, masked: Tensor, pos_idx: Tensor, self_idx: Tensor | None,
        temperature: float, epoch: float,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        a, c = self._pair_labels(sim)
        if a.shape[0] != sim.shape[0] or c.shape[0] != sim.shape[1]:
            raise ValueError(f"oracle labels {tuple(a.shape)}/{tuple(c.shape)} != {sim.shape}")
        same = (a[:, None] == c[None, :]) & (a[:, None] >= 0)  # (M, K)
        return drop_excluded(same, pos_idx, self_idx), sim.new_full((), float("nan"))


THRESHOLDS: dict[str, type[Threshold]] = {
    "adaptive": AdaptiveThreshold,
    "fixed": FixedThreshold,
    "superclass_oracle": SuperclassOracle,
}


def build_threshold(name: str, **kwargs: Any) -> Threshold:
    """Build a threshold by registry name; unknown names list the valid ones."""
    if name not in THRESHOLDS:
        raise ValueError(f"unknown threshold {name!r}; valid: {sorted(THRESHOLDS)}")
    return THRESHOLDS[name](**kwargs)
