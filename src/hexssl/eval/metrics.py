"""Small metric helpers shared by the kNN and linear evaluations."""

from __future__ import annotations

from torch import Tensor


def topk_correct(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Whether each label is among the ``k`` highest scores of its row.

    ``k`` is clipped to the number of classes, so top-5 on 3 classes is top-3.

    Shape:
        scores: (N, C); labels: (N,) -> (N,) bool.
    """
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # (N, k)
    return (top == labels[:, None]).any(dim=1)  # (N,)


def topk_accuracy(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent for each k, keyed ``top{k}``.

    Shape:
        scores: (N, C); labels: (N,).

    Example:
        >>> import torch
        >>> topk_accuracy(torch.eye(2), torch.tensor([0, 1]), ks=(1, 5))
        {'top1': 100.0, 'top5': 100.0}
    """
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows but labels has {labels.shape[0]}")
    if scores.shape[0] == 0:
        raise ValueError("topk_accuracy got no samples (scores has 0 rows)")
    n = scores.shape[0]
    return {f"top{k}": 100.0 * int(topk_correct(scores, labels, k).sum()) / n for k in ks}


def infer_num_classes(*labels: Tensor) -> int:
    """1 + the largest label found in any of the tensors."""
    return int(max(int(y.max().item()) for y in labels if y.numel() > 0)) + 1


def valid_rows(labels: Tensor) -> Tensor:
    """Boolean mask of rows with a real label (missing labels are -1, CONTRACTS.md)."""
    return labels >= 0


def check_train_test(
    train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor
) -> None:
    """Raise ValueError naming the first inconsistent shape."""
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(
            f"features must be 2-D (N, D); got {tuple(train_feats.shape)} and "
            f"{tuple(test_feats.shape)}"
        )
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"feature dims differ: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    if train_feats.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"{train_feats.shape[0]} train features but {train_labels.shape[0]} labels"
        )
    if test_feats.shape[0] != test_labels.shape[0]:
        raise ValueError(f"{test_feats.shape[0]} test features but {test_labels.shape[0]} labels")


__all__ = ["check_train_test", "infer_num_classes", "topk_accuracy", "topk_correct", "valid_rows"]
