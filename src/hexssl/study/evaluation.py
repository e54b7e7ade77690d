"""Evaluating a finished study run, and the files it leaves: metrics, weights, curves.

:func:`evaluate_run` measures kNN, linear probes, neighbour purity, effective rank and
the final HEX state of one run; :func:`export_weights` releases its backbone;
:func:`write_curves` keeps its emergence curves; :func:`transfer` evaluates released
backbones on other ImageFolder datasets.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hexssl.config import RunConfig
from hexssl.config import to_dict as config_dict
from hexssl.data.transforms import build_augmentation
from hexssl.eval.hierarchy import PurityCounts, per_group_effective_rank, purity_counts
from hexssl.eval.purity import purity_sets
from hexssl.eval.report import read_metrics
from hexssl.export import export_release, load_release, releases_in
from hexssl.run.atomic import atomic_write_text
from hexssl.run.eval_jobs import (
    Encoder,
    EvalView,
    config_from,
    dataset_tag,
    encoder_features,
    knn_summary,
    linear_summary,
    open_run_encoder,
    setup_data,
)
from hexssl.run.runs import open_run
from hexssl.study.protocol import Protocol

CURVE_COLUMNS = (
    "val/purity_class",
    "val/purity_super",
    "val/purity_class_chance",
    "val/purity_super_chance",
    "val/purity_eps",
    "val/purity_neighbour_frac",
    "val/purity_q99_class",
    "val/purity_q99_super",
    "val/purity_q99_eps",
    "train/hex/eps",
    "train/hex/neighbour_frac",
)


def finite(value: Any) -> Any:
    """NaN / inf -> None (JSON null), recursively; other values unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def purity_summary(method: Any, dataset: Any, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Neighbour purity over the whole split, in seeded random batches (as training sees).

    Per rule of :func:`~hexssl.eval.purity.purity_sets` (``q99`` for every run, ``own`` with HEX
    on), counts are pooled over batches. Keys: ``purity_<rule>_<class|super>`` and
    ``..._chance``, ``eps_<rule>``, ``neighbour_frac_<rule>`` (batch means).
    """

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    counts: dict[tuple[str, str], PurityCounts] = {}
    eps: dict[str, list[float]] = {}
    frac: dict[str, list[float]] = {}
    for idx in order.split(batch_size):
        if idx.numel() < 2:
            continue
        images, labels, supers, _ = dataset.get_batch(idx)
        sets = purity_sets(method, images.to(method.device), supers.to(method.device))
        n = idx.numel()
        exclude = torch.eye(n, dtype=torch.bool)
        for rule, (H, e) in sets.items():
            H = H.cpu()
            eps.setdefault(rule, []).append(e)
            frac.setdefault(rule, []).append(float(H.float().sum()) / (n * (n - 1)))
            for level, lab in (("class", labels), ("super", supers)):
                c = purity_counts(H, lab, lab, exclude)
                counts[(rule, level)] = counts.get((rule, level), PurityCounts()) + c
    out: dict[str, float] = {}
    for (rule, level), c in counts.items():
        rates = c.summary()
        out[f"purity_{rule}_{level}"] = rates["pooled"]
        out[f"purity_{rule}_{level}_chance"] = rates["chance"]
    for rule in eps:
        out[f"eps_{rule}"] = (
            float(np.nanmean(eps[rule])) if any(map(math.isfinite, eps[rule])) else math.nan
        )
        out[f"neighbour_frac_{rule}"] = float(np.mean(frac[rule]))
    return out


def evaluate_run(cfg: RunConfig, protocol: Protocol) -> dict[str, Any]:
    """kNN, linear probes, purity, effective rank and HEX state of one finished run."""

    ev = protocol.eval
    enc = open_run_encoder(cfg.run_dir, [])
    train, val = encoder_features(enc)
    knn = knn_summary(train, val, [int(ev["knn_k"])], [float(ev["knn_t"])])
    fractions = [float(f) for f in ev["linear_fractions"]]
    lin = linear_summary(train, val, fractions, cfg.seed, int(ev["linear_epochs"]))
    erank = per_group_effective_rank(val[0], val[2])
    erank_global = erank.pop("global")
    _, method, dm = open_run(cfg.run_dir, ["eval.purity_every_n_steps=0"])
    method.to(enc.device)
    purity = purity_summary(method, dm.val_set, int(ev["purity_batch_size"]), cfg.seed)
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    out: dict[str, Any] = {
        "knn_class_top1": knn.get("knn_class_top1"),
        "knn_super_top1": knn.get("knn_super_top1"),
        "knn_class_top5": knn.get("knn_class_top5"),
        "linear_top1": lin.get("linear_class_100pct_top1"),
        "linear10_top1": lin.get("linear_class_10pct_top1"),
        "linear_super_top1": lin.get("linear_super_100pct_top1"),
        # q = 0.99 on the tensors HEX acts on: one definition for every arm (comparable)
        "purity_class": purity["purity_q99_class"],
        "purity_class_chance": purity["purity_q99_class_chance"],
        "purity_super": purity["purity_q99_super"],
        "purity_super_chance": purity["purity_q99_super_chance"],
        # the H the loss uses (the run's own threshold); None with HEX off
        "purity_own_class": purity.get("purity_own_class"),
        "purity_own_super": purity.get("purity_own_super"),
        "eps_own_val": purity.get("eps_own"),
        "erank_global": erank_global,
        "erank_super": float(np.mean(list(erank.values()))) if erank else math.nan,
        "erank_per_superclass": erank,
        "final_eps": summary.get("train/hex/eps"),
        "final_neighbour_frac": summary.get("train/hex/neighbour_frac"),
        "final_local_share": summary.get("train/hex/local_share"),
        "online_acc1": summary.get("val/online_acc1"),
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
    }
    out["knn_all"], out["linear_all"] = knn, lin
    return out


def export_weights(cfg: RunConfig, path: Path, extra: dict[str, Any]) -> Path:
    """The run's final backbone as released fp16 weights: ``path`` (``NAME.safetensors``)
    and its architecture JSON ``NAME.json``; returns ``path``."""

    enc = open_run_encoder(cfg.run_dir, [])
    aug = enc.transform.augment
    buffers = dict(aug.named_buffers())
    mean = next(v for k, v in buffers.items() if k.endswith("mean")).flatten().tolist()
    std = next(v for k, v in buffers.items() if k.endswith("std")).flatten().tolist()
    data = {
        k: v
        for k, v in config_dict(cfg)["data"].items()
        if k in ("dataset", "root", "image_size", "options")
    }
    return export_release(
        enc.backbone, path, cfg.backbone.name, cfg.backbone.kwargs, cfg.data.image_size,
        mean, std, {**extra, "data": data},
    )  # fmt: skip


def write_curves(run_dir: Path, path: Path) -> Path | None:
    """The emergence curves of a run (CURVE_COLUMNS by step) as a small CSV."""

    if not (run_dir / "metrics.csv").is_file():
        return None
    m = read_metrics(run_dir)
    cols = [c for c in CURVE_COLUMNS if c in m]
    if not cols or "step" not in m:
        return None
    table = np.stack([m[c] for c in cols], 1)  # (R, C)
    keep = np.isfinite(table).any(1)
    lines = [",".join(["step", *cols])]
    for step, row in zip(m["step"][keep], table[keep]):
        cells = ["" if not math.isfinite(v) else f"{v:.6g}" for v in row]
        lines.append(",".join([str(int(step)), *cells]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_curves(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a curves CSV written by :func:`write_curves` (empty cells NaN)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {
        name: np.array([float(r[j]) if r[j] else math.nan for r in body])
        for j, name in enumerate(header)
    }


def _limit(dm: Any, n: int | None, seed: int) -> None:
    """Keep a seeded random ``n`` of each split (cheap tests only)."""
    if n is None:
        return
    for split in ("train_set", "val_set"):
        ds = getattr(dm, split)
        if ds is not None and len(ds) > n:
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
            setattr(dm, split, ds.subset(idx.sort().values))


def transfer(
    results_dir: Path,
    datasets: Sequence[str | Path],
    k: int = 20,
    t: float = 0.07,
    max_samples: int | None = None,
) -> list[Path]:
    """kNN (class and superclass) of every released backbone on other ImageFolder data.

    Each dataset (a directory or .tar.gz with ``hierarchy.csv``) is evaluated with its
    train split as the memory bank and its val split as the queries, decoded at each
    backbone's training resolution and normalised with its training statistics. Results
    go to ``<results>/transfer/<dataset>/<arm>-s<seed>.json``; existing ones are skipped.
    ``max_samples`` caps each split (a seeded random subset; for tests).
    """

    written = []
    for root in datasets:
        data_modules: dict[int, Any] = {}  # image size -> the dataset, loaded once
        for weights in releases_in(results_dir / "weights"):
            out = results_dir / "transfer" / dataset_tag(root) / f"{weights.stem}.json"
            if out.is_file():
                continue
            backbone, meta = load_release(weights)
            tr = meta["eval_transform"]
            size = int(tr["image_size"])
            over = ["data.dataset=imagefolder", f"data.root={root}", f"data.image_size={size}",
                    f"data.options={{image_size: {size}}}"]  # fmt: skip
            cfg = config_from({}, over)
            if size not in data_modules:
                data_modules[size] = setup_data(cfg)
                _limit(data_modules[size], max_samples, 0)
            view = EvalView(build_augmentation("eval", size, tr["mean"], tr["std"]))
            enc = Encoder(cfg, backbone, view, data_modules[size])
            written.append(_write_transfer(out, enc, meta, root, k, t, max_samples))
    return written


def _write_transfer(
    out: Path, enc: Any, meta: dict[str, Any], root: str | Path, k: int, t: float,
    max_samples: int | None,
) -> Path:  # fmt: skip

    train, val = encoder_features(enc)
    res = knn_summary(train, val, [k], [t])
    result = {
        "arm": meta.get("arm"),
        "seed": meta.get("seed"),
        "dataset": str(root),
        "n_train": int(train[0].shape[0]),
        "n_val": int(val[0].shape[0]),
        "num_classes": enc.dm.num_classes,
        "num_superclasses": enc.dm.num_superclasses,
        "k": k,
        "t": t,
        "knn_class_top1": res.get("knn_class_top1"),
        "knn_super_top1": res.get("knn_super_top1"),
        "max_samples": max_samples,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(finite(result), indent=2) + "\n")
    print(f"[study] transfer {out.stem} on {dataset_tag(root)}: class "
          f"{result['knn_class_top1']} super {result['knn_super_top1']}")  # fmt: skip
    return out
