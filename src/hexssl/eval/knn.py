"""Weighted k-nearest-neighbour classifier on frozen features.

Follows Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018, sec. 3.4) as used by DINO (arXiv:2104.14294, eval_knn.py):
cosine similarity of L2-normalised features, the k most similar training samples vote
for their label with weight exp(s / T). Queries are processed in chunks so memory stays
at ``chunk_size x N_train`` similarities.

Superclass accuracy is the same call with superlabels in place of labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hexssl.eval.metrics import check_train_test, infer_num_classes, topk_correct, valid_rows


def knn_neighbours(train_n: Tensor, query_n: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Cosine similarities and indices of the ``k`` nearest training samples, best first.

    Shape:
        train_n: (N, D) normalised; query_n: (Q, D) normalised -> (Q, k), (Q, k).
    """
    sim = query_n @ train_n.T  # (Q, N)
    top = sim.topk(k, dim=1, largest=True, sorted=True)
    return top.values, top.indices  # (Q, k), (Q, k)


def knn_votes(sims: Tensor, neighbour_labels: Tensor, T: float, num_classes: int) -> Tensor:
    """Class scores sum_j exp(s_j / T) over the neighbours j of each query.

    The row maximum is subtracted before exp (a per-row factor that does not change the
    ranking) so that a small T cannot overflow.

    Shape:
        sims: (Q, k); neighbour_labels: (Q, k) -> (Q, C).
    """
    weights = ((sims - sims[:, :1]) / T).exp()  # (Q, k); sims are sorted, col 0 is the max
    votes = sims.new_zeros(sims.shape[0], num_classes)  # (Q, C)
    return votes.scatter_add_(1, neighbour_labels, weights)


def _check_sweep(k: Sequence[int], T: Sequence[float]) -> None:
    if not k or any(ki < 1 for ki in k):
        raise ValueError(f"k={tuple(k)} must be a non-empty list of integers >= 1")
    if not T or any(t <= 0 for t in T):
        raise ValueError(f"T={tuple(T)} must be a non-empty list of temperatures > 0")


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")


def config_key(k: int, T: float) -> str:
    """Result-key prefix for one (k, T) pair, e.g. ``k20_T0.07``."""
    return f"k{k}_T{T:g}"


@torch.no_grad()
def knn_eval(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: Sequence[int] = (20,),
    T: Sequence[float] = (0.07,),
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Weighted kNN top-1 / top-5 accuracy (percent) for every (k, T) in the sweep.

    Samples with a missing label (-1) are dropped on both sides. A k larger than the
    training set uses every training sample. Top-5 is top-min(5, C).

    Args:
        train_feats, train_labels: the memory bank.
        test_feats, test_labels: the queries.
        k: numbers of neighbours to try.
        T: vote temperatures to try.
        num_classes: C; inferred from the labels when ``None``.
        chunk_size: queries per similarity block (memory is chunk_size x N_train).

    Returns:
        ``{"k20_T0.07_top1": ..., "k20_T0.07_top5": ..., ...}`` for each pair, plus
        ``top1``/``top5`` for the first pair (the pre-registered default, no selection on
        the test set) and ``best_top1`` over the sweep (test-selected, for reference only).

    Shape:
        train_feats: (N, D); train_labels: (N,); test_feats: (Q, D); test_labels: (Q,).

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> train_y, test_y = torch.arange(200) % 4, torch.arange(40) % 4
        >>> train_f = F.one_hot(train_y, 4) + 0.1 * torch.randn(200, 4, generator=gen)
        >>> test_f = F.one_hot(test_y, 4) + 0.1 * torch.randn(40, 4, generator=gen)
        >>> res = knn_eval(train_f, train_y, test_f, test_y, k=(10, 20), T=(0.07,))
        >>> res["top1"], res["k10_T0.07_top1"]
        (100.0, 100.0)
    """
    check_train_test(train_feats, train_labels, test_feats, test_labels)
    _check_sweep(k, T)
    _check_chunk(chunk_size)
    keep_tr, keep_te = valid_rows(train_labels), valid_rows(test_labels)
    if not keep_tr.any() or not keep_te.any():
        raise ValueError("knn_eval needs at least one labelled train and one labelled test sample")
    train_n = F.normalize(train_feats[keep_tr].float(), dim=1)  # (N, D)
    test_n = F.normalize(test_feats[keep_te].float(), dim=1)  # (Q, D)
    train_y, test_y = train_labels[keep_tr].long(), test_labels[keep_te].long()
    C = num_classes if num_classes is not None else infer_num_classes(train_y, test_y)
    counts = _count_correct(train_n, train_y, test_n, test_y, k, T, C, chunk_size)
    return _finalise(counts, test_y.shape[0], k, T)


def _count_correct(
    train_n: Tensor,
    train_y: Tensor,
    test_n: Tensor,
    test_y: Tensor,
    k: Sequence[int],
    T: Sequence[float],
    num_classes: int,
    chunk_size: int,
) -> dict[tuple[int, float, int], int]:
    """Number of correct top-1 / top-5 predictions per (k, T, topk), chunked over queries."""
    k_max = min(max(k), train_n.shape[0])
    counts = {(ki, t, top): 0 for ki in k for t in T for top in (1, 5)}
    for start in range(0, test_n.shape[0], chunk_size):
        query, labels = test_n[start : start + chunk_size], test_y[start : start + chunk_size]
        sims, idx = knn_neighbours(train_n, query, k_max)  # (q, k_max)
        neighbour_labels = train_y[idx]  # (q, k_max)
        for ki in k:
            kk = min(ki, k_max)
            for t in T:
                votes = knn_votes(sims[:, :kk], neighbour_labels[:, :kk], t, num_classes)
                for top in (1, 5):
                    counts[(ki, t, top)] += int(topk_correct(votes, labels, top).sum())
    return counts


def _finalise(
    counts: dict[tuple[int, float, int], int], n: int, k: Sequence[int], T: Sequence[float]
) -> dict[str, float]:
    """Turn correct counts into percentages with the key layout of :func:`knn_eval`."""
    out = {f"{config_key(ki, t)}_top{top}": 100.0 * c / n for (ki, t, top), c in counts.items()}
    first = config_key(k[0], T[0])
    out["top1"], out["top5"] = out[f"{first}_top1"], out[f"{first}_top5"]
    out["best_top1"] = max(out[f"{config_key(ki, t)}_top1"] for ki in k for t in T)
    return out
