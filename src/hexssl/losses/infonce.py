"""InfoNCE over anchors x candidates with a pluggable denominator (HEX_SPEC 3, docs/hex.md).

    L_i = -l_ip + log D_i,   l_ij = a_i . c_j / T

The denominator is a module ``(sim, T, pos_idx, self_idx) -> (log D (M,), stats)``:
``InfoNCEDenominator`` is the plain one, ``hex.HEXDenominator`` the HEX split. Methods
choose the pairing (SimCLR 2B x 2B, cross B x B, with or without a queue) through the
``*_pairing`` helpers, which also all-gather candidates under data-parallel training.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.losses.distributed import gather_with_grad, rank_and_world
from hexssl.run.hostsync import avoid_host_sync

Stats = dict[str, Tensor]
NEG_INF = float("-inf")


class Pairing(NamedTuple):
    """Anchors (M, D), candidates (K, D), positive column (M, 1), self column (M, 1)|None."""

    anchors: Tensor
    candidates: Tensor
    pos_idx: Tensor
    self_idx: Tensor | None


def simclr_pairing(z0: Tensor, z1: Tensor) -> Pairing:
    """SimCLR / NT-Xent pairing: 2B anchors against all 2B views, self excluded.

    Under data parallelism the candidates are gathered from every process; the indices
    then point into the gathered matrix. Shape: z0, z1 (B, D) -> M = 2B, K = world*2B.
    """
    _check_pair(z0, z1)
    z = torch.cat([z0, z1], 0)  # (2B, D)
    rank, _ = rank_and_world()
    n, b = z.shape[0], z0.shape[0]
    local = torch.arange(n, device=z.device)
    offset = rank * n
    pos = (local + b) % n + offset  # view 0 <-> view 1 of the same image
    return Pairing(z, gather_with_grad(z), pos[:, None], (local + offset)[:, None])


def cross_pairing(anchors: Tensor, candidates: Tensor, negatives: Tensor | None = None) -> Pairing:
    """Cross pairing: anchor i's positive is candidate i (MoCo, NNCLR, BYOL-style views).

    ``negatives`` (Q, D) are extra negative-only candidates, e.g. a MoCo queue; they are
    not gathered (every process holds the same queue). Shape: (B, D), (B, D) -> K = world*B + Q.
    """
    _check_pair(anchors, candidates)
    rank, _ = rank_and_world()
    b = anchors.shape[0]
    cands = gather_with_grad(candidates)  # (world*B, D)
    if negatives is not None:
        if negatives.shape[1] != candidates.shape[1]:
            raise ValueError(
                f"negatives have dim {negatives.shape[1]}, candidates {candidates.shape[1]}"
            )
        cands = torch.cat([cands, negatives.to(cands.dtype)], 0)  # (world*B + Q, D)
    pos = torch.arange(b, device=anchors.device) + rank * b
    return Pairing(anchors, cands, pos[:, None], None)


def _check_pair(a: Tensor, c: Tensor) -> None:
    if a.ndim != 2 or c.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D (N, D); got {tuple(a.shape)} and {tuple(c.shape)}"
        )
    if a.shape != c.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(c.shape)}; need equal (B, D)")
    if a.shape[0] == 0:
        raise ValueError("empty batch: need at least one pair")


def _check_indices(p: Pairing) -> None:
    m, k = p.anchors.shape[0], p.candidates.shape[0]
    if p.anchors.shape[1] != p.candidates.shape[1]:
        raise ValueError(
            f"anchors dim {p.anchors.shape[1]} != candidates dim {p.candidates.shape[1]}"
        )
    for name, idx in (("pos_idx", p.pos_idx), ("self_idx", p.self_idx)):
        if idx is None:
            continue
        if idx.shape != (m, 1):
            raise ValueError(f"{name} has shape {tuple(idx.shape)}; expected ({m}, 1)")
        # the range check reads values: free on the CPU, a host sync elsewhere (there an
        # out-of-range column fails in the gather's own device-side check instead)
        if not avoid_host_sync(idx.device) and (int(idx.min()) < 0 or int(idx.max()) >= k):
            raise ValueError(f"{name} holds columns outside [0, {k}) of the candidates")


def exclude_(logits: Tensor, pos_idx: Tensor, self_idx: Tensor | None) -> Tensor:
    """Set the positive and self columns to -inf in place: what is left is N(i)."""
    logits.scatter_(1, pos_idx, NEG_INF)
    return logits if self_idx is None else logits.scatter_(1, self_idx, NEG_INF)


def positive_logit(sim: Tensor, pos_idx: Tensor, temperature: float) -> Tensor:
    """l_ip = s_ip / T of every anchor, with gradients. Shape: (M, K), (M, 1) -> (M,)."""
    return sim.gather(1, pos_idx)[:, 0] / temperature


def work_logits(
    sim: Tensor, temperature: float, pos_idx: Tensor, self_idx: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(logits s / T on N(i), -inf at the positive and self (M, K); the positive logits
    (M,)), both without gradient: the work buffer and l_p of the hand-written backwards
    (HEX's and the relatives'), which write the gradient of ``sim`` themselves."""
    with torch.no_grad():
        work = sim * (1.0 / temperature)  # a multiply is cheaper than a divide
        lp = work.gather(1, pos_idx)[:, 0]
        return exclude_(work, pos_idx, self_idx), lp


def at_least_fp32(x: Tensor) -> Tensor:
    """Half-precision similarities are promoted; float64 stays (gradcheck)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def plain_log_denominator(logits: Tensor, self_idx: Tensor | None) -> Tensor:
    """log(e^{l_ip} + sum_{N(i)} e^{l_ij}): InfoNCE's denominator (HEX_SPEC 3). # (M,)"""
    if self_idx is not None:
        logits = logits.scatter(1, self_idx, NEG_INF)  # (M, K)
    return logits.logsumexp(1)


class InfoNCEDenominator(nn.Module):
    """Plain InfoNCE denominator: positive plus every negative (HEX_SPEC 3)."""

    def set_progress(self, epoch: float) -> None:
        """Nothing depends on progress here; present so all denominators share the API."""

    def forward(
        self, sim: Tensor, temperature: float, pos_idx: Tensor, self_idx: Tensor | None
    ) -> tuple[Tensor, Stats]:
        """log D_i. Shape: sim (M, K) -> (M,)."""
        return plain_log_denominator(at_least_fp32(sim) / temperature, self_idx), {}


def similarities(a: Tensor, c: Tensor, normalize: bool = True) -> Tensor:
    """Cosine (or dot) similarities in at least float32, also under autocast (HEX_SPEC 5).

    Shape: (M, D), (K, D) -> (M, K).
    """
    with torch.autocast(a.device.type, enabled=False):
        a, c = at_least_fp32(a), at_least_fp32(c)
        if normalize:
            a, c = F.normalize(a, dim=1), F.normalize(c, dim=1)
        return a @ c.T


def contrastive_loss(
    pairing: Pairing,
    temperature: float,
    denominator: nn.Module | None = None,
    normalize: bool = True,
) -> tuple[Tensor, Stats]:
    """Mean InfoNCE loss over anchors with the given denominator, and its statistics.

    Args:
        pairing: from ``simclr_pairing`` / ``cross_pairing`` or built by hand.
        temperature: T > 0.
        denominator: ``InfoNCEDenominator()`` (default) or ``HEXDenominator(...)``;
            called as ``denominator(sim, temperature, pos_idx, self_idx)`` -> (log D_i
            (M,), stats). One with ``fuses_numerator = True`` (HEX) is called with a
            fifth argument ``True`` and returns log D_i - s_ip / T instead.
        normalize: L2-normalise anchors and candidates first.

    Returns:
        (scalar loss, dict of detached statistics).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (e.g. 0.1)")
    _check_indices(pairing)
    sim = similarities(pairing.anchors, pairing.candidates, normalize)  # (M, K)
    den = denominator if denominator is not None else InfoNCEDenominator()
    if getattr(den, "fuses_numerator", False):  # HEX: one backward for both terms
        losses, stats = den(sim, temperature, pairing.pos_idx, pairing.self_idx, True)
        return losses.mean(), stats
    pos_logit = positive_logit(sim, pairing.pos_idx, temperature)  # (M,) s_ip / T
    log_d, stats = den(sim, temperature, pairing.pos_idx, pairing.self_idx)
    return (log_d - pos_logit.to(log_d.dtype)).mean(), stats


class InfoNCE(nn.Module):
    """InfoNCE (NT-Xent) with a pluggable denominator; HEX is one choice of denominator.

    ``forward(z0, z1)`` uses the SimCLR pairing; ``forward(z0, z1, pairing="cross",
    negatives=queue)`` the cross pairing. The statistics of the last call are in
    ``self.stats`` (detached tensors: eps, neighbours, neighbour_frac, local_share).

    Example:
        >>> from hexssl.losses import HEXDenominator, InfoNCE
        >>> loss_fn = InfoNCE(temperature=0.1, denominator=HEXDenominator(beta=1.0))
        >>> z0, z1 = torch.randn(32, 128), torch.randn(32, 128)
        >>> loss = loss_fn(z0, z1)
    """

    def __init__(self, temperature: float = 0.1, denominator: nn.Module | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (e.g. 0.1)")
        self.temperature = temperature
        self.denominator = denominator if denominator is not None else InfoNCEDenominator()
        self.stats: Stats = {}
        self._stat_sums: Stats = {}  # sums over this step's calls (see step_stats)
        # a tensor once counted: an int attribute that changes at every call would make
        # torch.compile recompile the loss at every call
        self._stat_calls: Tensor | int = 0

    def set_progress(self, epoch: float) -> None:
        """Push training progress (fractional epochs) into the denominator."""
        self.denominator.set_progress(epoch)  # type: ignore[operator]

    def end_step(self) -> None:
        """Once per optimiser step: lets a stateful denominator (threshold EMA) commit."""
        end = getattr(self.denominator, "end_step", None)
        if callable(end):
            end()

    def step_stats(self) -> tuple[Stats, Tensor | int]:
        """(sum of the statistics over the calls since the last read, number of calls)."""
        out = self._stat_sums, self._stat_calls
        self._stat_sums, self._stat_calls = {}, 0
        return out

    def _record(self, stats: Stats) -> None:
        self.stats = stats
        if stats:
            for key, value in stats.items():
                self._stat_sums[key] = self._stat_sums.get(key, 0.0) + value.detach()
            self._stat_calls = self._stat_calls + value.new_ones(())

    def forward(
        self,
        z0: Tensor,
        z1: Tensor,
        pairing: str = "simclr",
        negatives: Tensor | None = None,
    ) -> Tensor:
        """Loss for two batches of embeddings. Shape: (B, D), (B, D) -> ()."""
        if pairing not in PAIRINGS:
            raise ValueError(f"unknown pairing {pairing!r}; valid: {sorted(PAIRINGS)}")
        if pairing == "simclr" and negatives is not None:
            raise ValueError("negatives (a queue) need pairing='cross'")
        pairs = simclr_pairing(z0, z1) if pairing == "simclr" else cross_pairing(z0, z1, negatives)
        loss, stats = contrastive_loss(pairs, self.temperature, self.denominator)
        self._record(stats)
        return loss


PAIRINGS = {"simclr": simclr_pairing, "cross": cross_pairing}
