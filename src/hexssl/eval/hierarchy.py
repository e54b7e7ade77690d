"""Measurements of hierarchical emergence: neighbour purity and effective rank.

* Neighbour purity (HEX_SPEC 8): the share of each anchor's hierarchical neighbours
  H(i) = { j : s_ij > eps } (HEX_SPEC 4.1) that carry the anchor's class or superclass,
  against the chance rate of a random candidate. Purity well above chance at the
  superclass level but not at the class level is the signature of "hierarchical
  emergence".
* Effective rank (Roy & Vetterli, "The effective rank: a measure of effective
  dimensionality", EUSIPCO 2007): exp of the entropy of the normalised singular values.
  Computed per superclass it measures *local* collapse, globally it measures global
  collapse (HEX_SPEC 1).

All functions are plain tensor code and can be used as a library; :func:`hierarchy_report`
bundles them for a trained backbone or cached features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.eval.features import Batch, extract_features
from hexssl.losses.thresholds import row_quantile


# ------------------------------------------------------------------- neighbour purity
@dataclass
class PurityCounts:
    """Additive counts behind :func:`neighbour_purity`, so batches can be pooled."""

    same: float = 0.0  # sum_i |{j in H(i) : y_j = y_i}|
    total: float = 0.0  # sum_i |H(i)|
    anchor_frac_sum: float = 0.0  # sum over anchors with H(i) != {} of same_i / |H(i)|
    nonempty: float = 0.0  # anchors with a non-empty H(i)
    chance_same: float = 0.0  # sum_i |{j allowed : y_j = y_i}|
    chance_total: float = 0.0  # sum_i |{j allowed}|
    anchors: float = 0.0  # anchors with a known label

    def __add__(self, other: PurityCounts) -> PurityCounts:
        return PurityCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def summary(self) -> dict[str, float]:
        """Rates from the counts; a rate with an empty denominator is NaN."""
        return {
            "pooled": _ratio(self.same, self.total),
            "mean": _ratio(self.anchor_frac_sum, self.nonempty),
            "chance": _ratio(self.chance_same, self.chance_total),
            "mean_size": _ratio(self.total, self.anchors),
            "nonempty": _ratio(self.nonempty, self.anchors),
        }


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _check_purity_inputs(
    H: Tensor, anchor_labels: Tensor, cand_labels: Tensor, exclude: Tensor | None
) -> None:
    M, K = anchor_labels.shape[0], cand_labels.shape[0]
    if H.dtype != torch.bool or H.shape != (M, K):
        raise ValueError(
            f"H must be a bool (M, K) = ({M}, {K}) mask; got {H.dtype} {tuple(H.shape)}"
        )
    if exclude is not None and (exclude.dtype != torch.bool or exclude.shape != (M, K)):
        raise ValueError(
            f"exclude must be a bool ({M}, {K}) mask; got {exclude.dtype} {tuple(exclude.shape)}"
        )


def purity_counts(
    H: Tensor, anchor_labels: Tensor, cand_labels: Tensor, exclude: Tensor | None = None
) -> PurityCounts:
    """Counts for :func:`neighbour_purity` (same arguments); add them to pool batches."""
    _check_purity_inputs(H, anchor_labels, cand_labels, exclude)
    known = (anchor_labels >= 0)[:, None] & (cand_labels >= 0)[None, :]  # (M, K)
    allowed = known if exclude is None else known & ~exclude  # (M, K)
    same = anchor_labels[:, None] == cand_labels[None, :]  # (M, K)
    neigh = H & allowed  # (M, K)
    size, hit = neigh.sum(1), (neigh & same).sum(1)  # (M,), (M,)
    nonempty = size > 0  # (M,)
    return PurityCounts(
        same=float(hit.sum()),
        total=float(size.sum()),
        anchor_frac_sum=float((hit[nonempty] / size[nonempty]).sum()),
        nonempty=float(nonempty.sum()),
        chance_same=float((allowed & same).sum()),
        chance_total=float(allowed.sum()),
        anchors=float((anchor_labels >= 0).sum()),
    )


def neighbour_purity(
    H: Tensor, anchor_labels: Tensor, cand_labels: Tensor, exclude: Tensor | None = None
) -> dict[str, float]:
    """Share of hierarchical neighbours that carry the anchor's label (HEX_SPEC 8).

    Excluded pairs (self, the positive) and candidates or anchors with a missing label
    (-1) count neither as neighbours nor for the chance rate. Call it once with class
    labels and once with superclass labels.

    Args:
        H: neighbour mask, ``H[i, j]`` = candidate j is in H(i).
        anchor_labels: label of each anchor.
        cand_labels: label of each candidate.
        exclude: pairs outside N(i), e.g. ``torch.eye(N, dtype=torch.bool)`` when the
            anchors are also the candidates.

    Returns:
        ``pooled`` = sum_i same_i / sum_i |H(i)|; ``mean`` = mean of same_i / |H(i)| over
        anchors with non-empty H(i); ``chance`` = the same share among all allowed
        candidates; ``mean_size`` = mean |H(i)|; ``nonempty`` = share of anchors with
        non-empty H(i). Rates with an empty denominator are NaN.

    Shape:
        H: (M, K) bool; anchor_labels: (M,); cand_labels: (K,); exclude: (M, K) bool.

    Example:
        >>> superlabels = torch.arange(256) % 4
        >>> gen = torch.Generator().manual_seed(0)
        >>> z = F.one_hot(superlabels, 4).float() + 0.05 * torch.randn(256, 4, generator=gen)
        >>> H, eps = neighbour_sets(z)  # 4 tight clusters: every neighbour shares the superclass
        >>> self_mask = torch.eye(len(z), dtype=torch.bool)
        >>> neighbour_purity(H, superlabels, superlabels, exclude=self_mask)["pooled"]
        1.0
    """
    return purity_counts(H, anchor_labels, cand_labels, exclude).summary()


# ---------------------------------------------------------------------- neighbour sets
def cosine_similarity_matrix(z: Tensor) -> Tensor:
    """Cosine similarities of the L2-normalised rows. Shape: (N, D) -> (N, N)."""
    zn = F.normalize(z.float(), dim=1)  # (N, D)
    return zn @ zn.T  # (N, N)


def adaptive_eps(sim: Tensor, q: float = 0.99) -> float:
    """Mean over rows of the nearest-rank q-quantile of the off-diagonal entries.

    Matches ``torch.quantile(row, q, interpolation="nearest")`` (ties round half to
    even, like Python's ``round``) but selects the k-th value exactly (HEX_SPEC 5.1).

    Shape:
        sim: (N, N) with self on the diagonal.
    """
    N = sim.shape[0]
    masked = sim.diagonal_scatter(sim.new_full((N,), float("-inf")))  # (N, N) self excluded
    return float(row_quantile(masked, N - 1, q).mean())  # the loss's own selection


def neighbour_sets(z: Tensor, eps: float | None = None, q: float = 0.99) -> tuple[Tensor, float]:
    """Hierarchical neighbours H(i) = { j != i : s_ij > eps } of an evaluation batch.

    A plain evaluation batch has one view per image, so there is no positive and N(i) is
    every other sample. Without ``eps`` the adaptive threshold of HEX_SPEC 5.1 is used:
    the batch mean of each row's nearest-rank q-quantile over j != i.

    Args:
        z: features or projections of one batch (normalised here).
        eps: fixed threshold; ``None`` computes the adaptive one.
        q: quantile of the adaptive threshold, in [0, 1].

    Returns:
        ``(H, eps)`` with ``H[i, i] = False``.

    Shape:
        z: (N, D) -> H: (N, N) bool.

    Example:
        >>> H, eps = neighbour_sets(torch.randn(256, 128), q=0.99)  # about 2-3 per row
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"z must be (N, D) with N >= 2; got shape {tuple(z.shape)}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q={q} is outside [0, 1]; use e.g. q=0.99")
    sim = cosine_similarity_matrix(z)  # (N, N)
    thr = adaptive_eps(sim, q) if eps is None else float(eps)
    self_mask = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return (sim > thr) & ~self_mask, thr


# ---------------------------------------------------------------------- effective rank
def _rank_tolerance(X: Tensor, s: Tensor) -> float:
    """``torch.linalg.matrix_rank``'s cut-off, eps(dtype of X) * max(N, D) * scale.

    The scale includes the norm of the uncentred X so that the rounding noise left by
    centring a constant matrix counts as zero.
    """
    dtype = X.dtype if X.is_floating_point() else torch.float64
    scale = max(float(s.max()), float(torch.linalg.norm(X.double())))
    return torch.finfo(dtype).eps * max(X.shape) * scale


def effective_rank(X: Tensor, centre: bool = True) -> float:
    """Roy & Vetterli (2007) effective rank: exp(-sum_k p_k log p_k), p_k = s_k / sum s.

    X is centred (the column mean removed) by default so that the measure describes the
    spread of the representations around their mean; a common offset would otherwise
    add a direction. ``centre=False`` gives the paper's definition on the raw matrix.
    Singular values below the ``torch.linalg.matrix_rank`` tolerance for the input dtype
    count as zero (float32 round-off would otherwise add a little entropy), and a matrix
    with no non-zero singular value (e.g. a fully collapsed, centred set) returns 0.0.
    The SVD runs in float64.

    Shape:
        X: (N, D).

    Example:
        >>> round(effective_rank(torch.eye(4), centre=False), 6)
        4.0
    """
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (N, D) matrix; got shape {tuple(X.shape)}")
    raw = X.double()
    Xc = raw - raw.mean(dim=0) if centre else raw  # (N, D)
    s = torch.linalg.svdvals(Xc)  # (min(N, D),)
    s = s[s > _rank_tolerance(X, s)]
    if s.numel() == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def per_group_effective_rank(
    X: Tensor, groups: Tensor, centre: bool = True, min_size: int = 2
) -> dict[str, float]:
    """Effective rank of each group's rows (local collapse) and of all rows (global).

    Groups with fewer than ``min_size`` rows and the missing label -1 are skipped.

    Returns:
        ``{"global": erank(X), "<g>": erank(X[groups == g]), ...}`` with string keys so
        the dict can go straight into JSON.

    Shape:
        X: (N, D); groups: (N,).
    """
    if groups.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but groups has {groups.shape[0]}")
    out = {"global": effective_rank(X, centre)}
    for g in groups[groups >= 0].unique().tolist():
        rows = X[groups == g]  # (n_g, D)
        if rows.shape[0] >= min_size:
            out[str(g)] = effective_rank(rows, centre)
    return out


# ----------------------------------------------------------------------------- report
@dataclass
class BatchedPurity:
    """Purity counts pooled over evaluation batches, plus neighbour-set statistics."""

    cls: PurityCounts
    sup: PurityCounts
    eps: list[float]
    neighbour_frac: list[float]  # per batch: mean |H(i)| / |N(i)|


def batched_purity(
    feats: Tensor,
    labels: Tensor,
    superlabels: Tensor,
    batch_size: int = 256,
    eps: float | None = None,
    q: float = 0.99,
    seed: int = 0,
) -> BatchedPurity:
    """Neighbour purity within seeded random batches, as HEX sees them in training.

    Shape:
        feats: (N, D); labels: (N,); superlabels: (N,).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size} must be >= 2 for neighbours to exist")
    order = torch.randperm(feats.shape[0], generator=torch.Generator().manual_seed(seed))
    out = BatchedPurity(PurityCounts(), PurityCounts(), [], [])
    for idx in order.split(batch_size):
        if idx.numel() < 2:
            continue
        H, thr = neighbour_sets(feats[idx], eps, q)  # (B, B)
        self_mask = torch.eye(idx.numel(), dtype=torch.bool)
        out.cls += purity_counts(H, labels[idx], labels[idx], self_mask)
        out.sup += purity_counts(H, superlabels[idx], superlabels[idx], self_mask)
        out.eps.append(thr)
        out.neighbour_frac.append(float(H.float().mean()) * idx.numel() / (idx.numel() - 1))
    return out


def _resolve_features(
    source: nn.Module | Tensor,
    loader: Iterable[Batch] | None,
    labels: Tensor | None,
    superlabels: Tensor | None,
    transform: Callable[[Tensor], Tensor] | None,
    device: torch.device | str,
) -> tuple[Tensor, Tensor, Tensor]:
    """(feats, labels, superlabels) from in-memory features or a backbone + loader."""
    if isinstance(source, Tensor):
        if labels is None or superlabels is None:
            raise ValueError("with in-memory features pass labels= and superlabels= as well")
        return source.float().cpu(), labels.cpu(), superlabels.cpu()
    if loader is None:
        raise ValueError("with a backbone pass loader= yielding (images, label, superlabel, index)")
    return extract_features(source, loader, transform, device)


def _purity_entries(prefix: str, counts: PurityCounts) -> dict[str, float]:
    rates = counts.summary()
    return {
        prefix: rates["pooled"],
        f"{prefix}_mean": rates["mean"],
        f"{prefix}_chance": rates["chance"],
    }


def _erank_entries(erank: dict[str, float]) -> dict[str, float]:
    groups = {g: v for g, v in erank.items() if g != "global"}
    mean = sum(groups.values()) / len(groups) if groups else math.nan
    out = {"erank_global": erank["global"], "erank_super_mean": mean}
    out.update({f"erank_super/{g}": v for g, v in groups.items()})
    return out


def hierarchy_report(
    source: nn.Module | Tensor,
    loader: Iterable[Batch] | None = None,
    labels: Tensor | None = None,
    superlabels: Tensor | None = None,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    eps: float | None = None,
    q: float = 0.99,
    seed: int = 0,
    centre: bool = True,
) -> dict[str, float]:
    """Neighbour purity and effective rank of a representation.

    Purity is measured inside seeded random batches of ``batch_size`` (HEX defines
    neighbours within a batch), with the adaptive threshold of each batch unless a fixed
    ``eps`` is given; counts are pooled over batches. Effective rank uses all rows.

    Args:
        source: a backbone (then ``loader`` is required) or features (N, D) (then
            ``labels`` and ``superlabels`` are required).
        loader: yields ``(images_uint8, label, superlabel, index)`` batches.
        labels, superlabels: class and superclass of each feature row (-1 if missing).
        transform: eval augmentation for the backbone path (see ``extract_features``).
        device: where the backbone runs.
        batch_size: size of the evaluation batches for purity.
        eps: fixed neighbour threshold; ``None`` = adaptive, quantile ``q``.
        q: quantile of the adaptive threshold.
        seed: seed of the batch split.
        centre: centre features before the effective rank.

    Returns:
        ``purity_class``, ``purity_class_mean``, ``purity_class_chance``, the same three
        for ``purity_super``, ``eps`` (mean over batches), ``neighbour_frac`` (mean
        |H(i)| / |N(i)|), ``erank_global``, ``erank_super_mean`` and
        ``erank_super/<g>`` per superclass g. Purity names follow the ``val/purity_*``
        metrics of CONTRACTS.md.

    Shape:
        source: (N, D) features or a module mapping (B, 3, H, W) -> (B, D).

    Example:
        >>> sy = torch.arange(512) % 4
        >>> y = torch.arange(512) % 8  # class c belongs to superclass c % 4
        >>> gen = torch.Generator().manual_seed(0)
        >>> feats = F.one_hot(sy, 4).float() + 0.05 * torch.randn(512, 4, generator=gen)
        >>> rep = hierarchy_report(feats, labels=y, superlabels=sy, batch_size=256)
        >>> rep["purity_super"], round(rep["purity_super_chance"], 2)  # chance: 63 of 255
        (1.0, 0.25)
    """
    feats, y, sy = _resolve_features(source, loader, labels, superlabels, transform, device)
    pur = batched_purity(feats, y, sy, batch_size, eps, q, seed)
    out = {**_purity_entries("purity_class", pur.cls), **_purity_entries("purity_super", pur.sup)}
    out["eps"] = sum(pur.eps) / len(pur.eps) if pur.eps else math.nan
    out["neighbour_frac"] = (
        sum(pur.neighbour_frac) / len(pur.neighbour_frac) if pur.neighbour_frac else math.nan
    )
    out.update(_erank_entries(per_group_effective_rank(feats, sy, centre)))
    return out
