"""Neighbour purity during training (HEX_SPEC 8), as a Lightning callback.

Which negatives does a run's threshold put in H(i), and how many of them share the
anchor's class or superclass? :func:`purity_sets` rebuilds H on one batch of images
with the run's own threshold (``"own"``, HEX on) and with HEX's default q = 0.99 rule
(``"q99"``, every run, comparable across runs), on the tensors the method's loss
contrasts; :class:`PurityCallback` logs the purity of both on a fixed validation batch
every ``every`` steps. Nothing here changes training: the method is put in eval mode
for the measurement (BN statistics and threshold EMAs are read, not updated).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from hexssl.eval.hierarchy import neighbour_purity
from hexssl.losses.thresholds import AdaptiveThreshold
from hexssl.methods.base import SSLMethod

PurityBatch = tuple[Tensor, Tensor, Tensor]  # images (N, 3, H, W) uint8, labels, superlabels


def fixed_batch(dataset: Any, n: int, seed: int = 0) -> PurityBatch:
    """``n`` items drawn once at random (seeded) as (images, labels, superlabels).

    Random, not the first ``n``: evaluation splits are often sorted by class, and a
    slice of them would hold only a few classes (and inflated chance rates).
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=gen)[: min(n, len(dataset))]
    items = [dataset[int(i)] for i in order]
    images = torch.stack([torch.as_tensor(it[0]) for it in items])
    labels = torch.tensor([int(it[1]) for it in items])
    supers = torch.tensor([int(it[2]) for it in items])
    return images, labels, supers


def threshold_progress(method: SSLMethod) -> float:
    """Training progress for threshold schedules: from the trainer, else as saved.

    A method re-opened from a checkpoint has no trainer; the HEX module's progress
    buffer (saved with the weights) then says where training stopped.
    """
    if method._trainer is not None:
        return method.epoch_float
    extra = method.extra_term
    den = extra.term.denominator if extra is not None else method.denominator
    saved = getattr(den, "epoch", None)
    return float(saved) if isinstance(saved, Tensor) else 0.0


@torch.no_grad()
def purity_sets(
    method: SSLMethod, images: Tensor, superlabels: Tensor
) -> dict[str, tuple[Tensor, float]]:
    """Neighbour sets H of one uint8 batch (one eval view per image), by two rules.

    ``"own"``: the run's own threshold module (its q, EMA, schedule, or the oracle) at
    the current training progress, on the tensors the loss contrasts
    (:meth:`SSLMethod.hex_views`); present only when HEX is on. ``"q99"``: the adaptive
    q = 0.99 rule (HEX_SPEC 5.1 defaults) on the same tensors, comparable across runs.
    Both exclude the diagonal (self or positive) from N(i).

    Shape:
        images: (N, 3, H, W) uint8; superlabels: (N,) -> {name: (H (N, N) bool, eps)}.
    """
    was_training = method.training
    method.eval()  # BN in eval mode; an EMA threshold reads its state without updating it
    try:
        anchors, cands = method.hex_views(method.eval_view(images))  # (N, D), (N, D)
        sim = F.normalize(anchors.float(), dim=1) @ F.normalize(cands.float(), dim=1).T
        diag = torch.arange(sim.shape[0], device=sim.device)[:, None]  # (N, 1)
        rules: dict[str, nn.Module] = {"q99": AdaptiveThreshold(q=0.99)}
        own = method.hex_threshold()
        if own is not None:
            method.push_labels(superlabels)  # read by the oracle only
            rules["own"] = own
        out = {}
        for name, rule in rules.items():
            H, eps = rule(sim, diag, None, threshold_progress(method))  # (N, N), eps
            out[name] = (H, float(eps))
        return out
    finally:
        method.train(was_training)


@torch.no_grad()
def purity_metrics(method: SSLMethod, batch: PurityBatch) -> dict[str, float]:
    """Neighbour purity of H(i) on a fixed validation batch (HEX_SPEC 8).

    ``val/purity_*``: the H the loss uses (the run's own threshold; HEX's default
    q = 0.99 rule when HEX is off). ``val/purity_q99_*``: always the q = 0.99 rule.
    Both on the tensors HEX acts on (:meth:`SSLMethod.hex_views`).
    """
    images, labels, superlabels = (t.to(method.device) for t in batch)
    sets = purity_sets(method, images, superlabels)
    out: dict[str, float] = {}
    for rule, prefix in (
        (sets.get("own", sets["q99"]), "val/purity"),
        (sets["q99"], "val/purity_q99"),
    ):
        H, eps = rule
        out[f"{prefix}_eps"] = eps
        n = H.shape[0]
        out[f"{prefix}_neighbour_frac"] = float(H.float().sum()) / max(n * (n - 1), 1)
        exclude = torch.eye(n, dtype=torch.bool, device=H.device)
        for name, lab in (("class", labels), ("super", superlabels)):
            if bool((lab >= 0).any()):
                res = neighbour_purity(H, lab, lab, exclude)
                out[f"{prefix}_{name}"] = float(res["pooled"])
                out[f"{prefix}_{name}_chance"] = float(res["chance"])
    return out


class PurityCallback(Callback):
    """Log :func:`purity_metrics` on a fixed batch every ``every`` optimiser steps.

    The metrics go straight to the loggers at that step (``self.log`` would re-emit the
    last value at every ``log_every_n_steps`` row, and the curve would show stale
    points); the latest are kept in :attr:`last` for the run's summary.

    Example:
        >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
        >>> cb = PurityCallback((images, torch.arange(4), torch.arange(4)), every=50)
        >>> cb.every, cb.last
        (50, {})
    """

    def __init__(self, batch: PurityBatch, every: int) -> None:
        if every < 1:
            raise ValueError(f"every={every} must be >= 1 (steps between measurements)")
        self.batch, self.every = batch, every
        self.last: dict[str, float] = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if not isinstance(pl_module, SSLMethod) or trainer.global_step % self.every:
            return
        metrics = purity_metrics(pl_module, self.batch)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self.last = metrics
