"""Offline linear probe on cached (frozen) features.

Protocol: standardise features with statistics of the training features, train a single
``nn.Linear`` with Adam or SGD and a cosine learning-rate schedule for a fixed number of
epochs, and report top-1 / top-5 on the test features. Semi-supervised probes use 100 %,
10 % and 1 % of the training labels (HEX_SPEC 7, as in SimCLR, arXiv:2002.05709 sec. B.5)
drawn with :func:`balanced_subset`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.eval.metrics import check_train_test, infer_num_classes, topk_accuracy, valid_rows

OptimizerFactory = Callable[[Iterable[nn.Parameter], float, float], torch.optim.Optimizer]

ProbeTrainer = Callable[[Tensor, Tensor, float], nn.Module]  # (x, y, weight_decay) -> model

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
}


# ----------------------------------------------------------------------- label subsets
def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} is outside (0, 1]; use e.g. 0.1 for 10 %")


def balanced_subset(labels: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Seeded, class-balanced subset: ``max(1, round(fraction * n_c))`` samples of class c.

    Every class keeps at least one sample; a balanced dataset gives the same count per
    class. Samples with a missing label (-1) are never chosen. The same (labels,
    fraction, seed) always gives the same subset.

    Shape:
        labels: (N,) -> sorted indices (M,) long.

    Example:
        >>> train_labels = torch.arange(1000) % 10
        >>> idx = balanced_subset(train_labels, 0.01, seed=0)  # 1 % of the labels
        >>> len(idx), torch.bincount(train_labels[idx]).tolist()  # one image per class
        (10, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    """
    _check_fraction(fraction)
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    picked = []
    for c in labels[valid_rows(labels)].unique().tolist():
        members = (labels == c).nonzero().flatten()  # (n_c,)
        n_keep = max(1, round(fraction * members.numel()))
        picked.append(members[torch.randperm(members.numel(), generator=gen)[:n_keep]])
    if not picked:
        raise ValueError("balanced_subset got no labelled samples (all labels are -1)")
    return torch.cat(picked).sort().values


def split_train_val(labels: Tensor, val_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Per class, hold out ``floor(val_fraction * n_c)`` samples for validation.

    Classes too small to spare a sample contribute only to training, so the validation
    set may be empty.

    Shape:
        labels: (N,) -> train indices (N_tr,), val indices (N_val,).
    """
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()  # (n_c,)
        members = members[torch.randperm(members.numel(), generator=gen)]
        n_val = math.floor(val_fraction * members.numel())
        val.append(members[:n_val])
        train.append(members[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


# ----------------------------------------------------------------------------- training
def fit_standardiser(x: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of the training features.

    Shape:
        x: (N, D) -> mean (D,), std (D,).
    """
    return x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(eps)


def cosine_lr(step: int, total_steps: int) -> float:
    """Learning-rate multiplier 0.5 * (1 + cos(pi * step / total)), a pure function."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def _minibatches(n: int, batch_size: int | None, gen: torch.Generator) -> list[Tensor]:
    """Shuffled index batches for one epoch; ``None`` means one full batch."""
    order = torch.randperm(n, generator=gen)
    size = n if batch_size is None else batch_size
    return list(order.split(size))


def train_linear(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    batch_size: int | None = 512,
    optimizer: str = "adam",
    seed: int = 0,
) -> nn.Linear:
    """Train ``nn.Linear(D, C)`` with cross-entropy and a cosine schedule.

    Args:
        x, y: standardised training features and labels.
        num_classes: C.
        epochs: passes over the data.
        lr: peak learning rate.
        weight_decay: L2 penalty passed to the optimiser.
        batch_size: minibatch size; ``None`` trains full-batch.
        optimizer: a key of ``OPTIMIZERS``.
        seed: initialisation and shuffling seed (global RNG state is left untouched).

    Shape:
        x: (N, D); y: (N,).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; choose from {sorted(OPTIMIZERS)}")
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(x.shape[1], num_classes).to(x.device)
    gen = torch.Generator().manual_seed(seed)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr, weight_decay)
    steps_per_epoch = len(_minibatches(x.shape[0], batch_size, gen))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, epochs * steps_per_epoch))
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in _minibatches(x.shape[0], batch_size, gen):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model


@torch.no_grad()
def probe_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Top-1 and top-5 (top-min(5, C)) accuracy in percent. Shape: x (N, D), y (N,)."""
    return topk_accuracy(model(x), y, ks=(1, 5))


# ------------------------------------------------------------------------- evaluation
def select_weight_decay(
    x: Tensor,
    y: Tensor,
    weight_decays: Sequence[float],
    fit: ProbeTrainer,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> float:
    """Pick the weight decay with the best top-1 on a held-out split of the train set.

    Falls back to ``weight_decays[0]`` when there is one candidate or no sample can be
    spared for validation (e.g. 1 label per class). The test set is never used.

    Args:
        x, y: standardised labelled features and their labels.
        weight_decays: candidates.
        fit: ``fit(x, y, weight_decay) -> model`` trains one probe.
        val_fraction: share of each class held out.
        seed: split seed.

    Shape:
        x: (N, D); y: (N,).
    """
    if not weight_decays:
        raise ValueError("weight_decays is empty; pass at least one value, e.g. (0.0,)")
    if len(weight_decays) == 1:
        return weight_decays[0]
    tr, va = split_train_val(y, val_fraction, seed)
    if va.numel() == 0:
        return weight_decays[0]
    scores = [probe_accuracy(fit(x[tr], y[tr], wd), x[va], y[va])["top1"] for wd in weight_decays]
    return weight_decays[max(range(len(scores)), key=scores.__getitem__)]


def fraction_key(fraction: float) -> str:
    """Result-key prefix for a label fraction, e.g. ``10pct`` for 0.1."""
    return f"{fraction * 100:g}pct"


def linear_eval(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    fractions: Sequence[float] = (1.0, 0.1, 0.01),
    seed: int = 0,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int | None = 512,
    optimizer: str = "adam",
    weight_decays: Sequence[float] = (0.0,),
    val_fraction: float = 0.1,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Linear-probe accuracy (percent) for each label fraction.

    Features are standardised with the mean and std of all training features (no labels
    are used for that, so every fraction shares them). Samples with label -1 are dropped.
    With several ``weight_decays`` the value is chosen per fraction on a held-out
    ``val_fraction`` of that fraction's labelled subset, then the probe is retrained on
    the whole subset.

    Returns:
        For each fraction f, keys ``{f}pct_top1``, ``{f}pct_top5``, ``{f}pct_wd`` (the
        weight decay used) and ``{f}pct_n`` (labelled samples), e.g. ``10pct_top1``.

    Shape:
        train_feats: (N, D); train_labels: (N,); test_feats: (Q, D); test_labels: (Q,).

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> train_y, test_y = torch.arange(400) % 4, torch.arange(40) % 4
        >>> train_f = F.one_hot(train_y, 4) + 0.1 * torch.randn(400, 4, generator=gen)
        >>> test_f = F.one_hot(test_y, 4) + 0.1 * torch.randn(40, 4, generator=gen)
        >>> res = linear_eval(train_f, train_y, test_f, test_y, fractions=(1.0, 0.01))
        >>> res["100pct_top1"], res["1pct_top1"]  # 1 %: one labelled image per class
        (100.0, 100.0)
    """
    check_train_test(train_feats, train_labels, test_feats, test_labels)
    mean, std = fit_standardiser(train_feats.float())
    x_tr, x_te = (train_feats.float() - mean) / std, (test_feats.float() - mean) / std
    keep_te = valid_rows(test_labels)
    x_te, y_te = x_te[keep_te], test_labels[keep_te].long()
    C = num_classes if num_classes is not None else infer_num_classes(train_labels, y_te)

    def fit(x: Tensor, y: Tensor, weight_decay: float) -> nn.Linear:
        return train_linear(x, y, C, epochs, lr, weight_decay, batch_size, optimizer, seed)

    out: dict[str, float] = {}
    for fraction in fractions:
        idx = balanced_subset(train_labels, fraction, seed)  # (M,)
        x, y = x_tr[idx], train_labels[idx].long()
        wd = select_weight_decay(x, y, weight_decays, fit, val_fraction, seed)
        acc = probe_accuracy(fit(x, y, wd), x_te, y_te)
        key = fraction_key(fraction)
        out.update({f"{key}_top1": acc["top1"], f"{key}_top5": acc["top5"]})
        out.update({f"{key}_wd": float(wd), f"{key}_n": float(idx.numel())})
    return out
