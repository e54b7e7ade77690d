"""Evaluation jobs on trained runs: ``hexssl knn``, ``hexssl linear``, ``hexssl umap``.

Features of the frozen backbone are extracted once per (run, checkpoint, split) and
cached under ``<run>/features/``; every probe then runs on the cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hexssl.atomic import atomic_write_text
from hexssl.config import ConfigError
from hexssl.eval.features import cached_features, extract_features
from hexssl.eval.knn import knn_eval
from hexssl.eval.linear import linear_eval
from hexssl.eval.plots import plot_embedding_2d
from hexssl.methods.base import SSLMethod
from hexssl.runs import open_run

Feats = tuple[Tensor, Tensor, Tensor]


def frozen_features(
    method: SSLMethod, dm: Any, run_dir: Path | None = None, tag: str = "last"
) -> tuple[Feats, Feats]:
    """(train, val) backbone features with the eval transform; cached when ``run_dir``."""
    if getattr(dm, "val_set", None) is None:
        raise ConfigError("this dataset has no evaluation split; pass --data data.dataset=...")
    transform = method.eval_view
    method.eval()
    loaders = {"train": dm.train_eval_dataloader(), "val": dm.val_dataloader()}
    out = []
    for split, loader in loaders.items():
        if run_dir is None:
            out.append(extract_features(method.backbone, loader, transform, method.device))
        else:
            f = cached_features(
                run_dir, f"{tag}-{split}", method.backbone, loader, transform, method.device
            )
            out.append((f[0], f[1], f[2]))
    return out[0], out[1]


def levels(train: Feats, val: Feats) -> dict[str, int]:
    """Label levels present in both splits: class (index 1), superclass (index 2)."""
    have = {
        name: i
        for name, i in (("class", 1), ("super", 2))
        if bool((train[i] >= 0).any()) and bool((val[i] >= 0).any())
    }
    return have


def knn_summary(train: Feats, val: Feats, k: list[int], t: list[float]) -> dict[str, float]:
    """kNN top-1/top-5 at class and superclass level (first (k, T) pair as headline)."""
    out: dict[str, float] = {}
    for level, i in levels(train, val).items():
        res = knn_eval(train[0], train[i], val[0], val[i], k=tuple(k), T=tuple(t))
        out.update({f"knn_{level}_{key}": float(v) for key, v in res.items()})
    return out


def _open(args: argparse.Namespace) -> tuple[Any, SSLMethod, Any, Path]:
    run = Path(args.run_dir)
    overrides = [*args.data, "eval.purity_every_n_steps=0"]
    cfg, method, dm = open_run(run, overrides, args.checkpoint)
    return cfg, method, dm, run


def _save(run: Path, name: str, result: dict[str, Any]) -> None:
    atomic_write_text(run / name, json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>28s}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")


def run_knn(args: argparse.Namespace) -> dict[str, float]:
    """``hexssl knn``: weighted kNN, class and superclass, k and T sweepable."""
    _, method, dm, run = _open(args)
    with torch.no_grad():
        train, val = frozen_features(method, dm, run, args.checkpoint)
    result = knn_summary(train, val, args.k, args.t)
    _save(run, "knn.json", result)
    return result


def run_linear(args: argparse.Namespace) -> dict[str, float]:
    """``hexssl linear``: offline linear probe at several label fractions."""
    cfg, method, dm, run = _open(args)
    with torch.no_grad():
        train, val = frozen_features(method, dm, run, args.checkpoint)
    result: dict[str, float] = {}
    for level, i in levels(train, val).items():
        res = linear_eval(
            train[0],
            train[i],
            val[0],
            val[i],
            fractions=tuple(args.fractions),
            seed=cfg.seed,
            epochs=args.epochs,
        )
        result.update({f"linear_{level}_{k}": float(v) for k, v in res.items()})
    _save(run, "linear.json", result)
    return result


def run_umap(args: argparse.Namespace) -> Path:
    """``hexssl umap``: 2-D plot of validation features, coloured by superclass."""
    _, method, dm, run = _open(args)
    with torch.no_grad():
        _, val = frozen_features(method, dm, run, args.checkpoint)
    path = plot_embedding_2d(
        val[0],
        val[1],
        val[2],
        run / f"embedding-{args.method}.png",
        method=args.method,
        title=run.name,
    )
    print(f"wrote {path}")
    return path
