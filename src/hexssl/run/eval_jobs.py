"""Evaluation jobs on trained runs: ``hexssl knn``, ``hexssl linear``, ``hexssl umap``.

The target is a run directory or a released weights file (``export_release``: an fp16
backbone ``state_dict`` with a JSON naming its architecture). Only the backbone is built
and loaded, so ``--data`` may point at a dataset with other classes and superclasses
(transfer evaluation). Features of the frozen backbone are extracted once per (run,
checkpoint, split) and cached under ``<run>/features/``, keyed by the checkpoint's
content and the data config; every probe then runs on the cache.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.backbones import build_backbone
from hexssl.config import ConfigError, RunConfig, from_dict, parse_override, set_path
from hexssl.data.transforms import build_augmentation
from hexssl.eval.features import cached_features, extract_features, file_identity
from hexssl.eval.knn import knn_eval
from hexssl.eval.linear import linear_eval
from hexssl.eval.plots import plot_embedding_2d
from hexssl.export import is_release, load_release
from hexssl.methods.base import SSLMethod
from hexssl.run.atomic import atomic_write_text
from hexssl.run.build import build_datamodule
from hexssl.run.runs import checkpoint_path, checkpoint_state, run_config

Feats = tuple[Tensor, Tensor, Tensor]


class EvalView(nn.Module):
    """The deterministic eval view of a uint8 batch, as ``SSLMethod.eval_view``.

    Shape: (B, 3, H, W) uint8 -> (B, 3, h, w) float, normalised.
    """

    def __init__(self, augment: nn.Module) -> None:
        super().__init__()
        self.augment = augment

    def forward(self, images: Tensor) -> Tensor:
        gen = torch.Generator(device=images.device).manual_seed(0)
        view: Tensor = self.augment(images, generator=gen)[0]
        return view


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Encoder:
    """A frozen backbone, its eval transform, the data to evaluate it on, and its cache.

    ``cache_dir`` is the run directory (features cached under ``features/``), or None
    for released weights, whose features are never written next to them.
    """

    cfg: RunConfig
    backbone: nn.Module
    transform: EvalView
    dm: Any
    cache_dir: Path | None = None
    cache_key: dict[str, Any] | None = None
    tag: str = "last"
    device: torch.device = field(default_factory=default_device)
    suffix: str = ""  # "-<checkpoint>" / "-<data>" when not the run's own last / own data


def _splits(
    backbone: nn.Module,
    transform: Callable[[Tensor], Tensor],
    dm: Any,
    device: torch.device | str,
    cache: tuple[Path, str, dict[str, Any] | None] | None,
) -> tuple[Feats, Feats]:
    """(train, val) features with the eval transform, cached when ``cache`` is given.

    The features stay on ``device`` (cached copies are written from the CPU), so kNN and
    the linear probes run where the backbone ran.
    """
    if getattr(dm, "val_set", None) is None:
        raise ConfigError("this dataset has no evaluation split; pass --data data.dataset=...")
    loaders = {"train": dm.train_eval_dataloader(), "val": dm.val_dataloader()}
    out = []
    for split, loader in loaders.items():
        if cache is None:
            out.append(extract_features(backbone, loader, transform, device))
        else:
            run_dir, tag, key = cache
            f = cached_features(
                run_dir, f"{tag}-{split}", backbone, loader, transform, device, key=key
            )
            out.append((f[0], f[1], f[2]))
    on_device = [(f.to(device), y.to(device), s.to(device)) for f, y, s in out]
    return on_device[0], on_device[1]


def encoder_features(enc: Encoder) -> tuple[Feats, Feats]:
    """(train, val) features of an :class:`Encoder` (train = memory bank, val = queries)."""
    cache = None if enc.cache_dir is None else (enc.cache_dir, enc.tag, enc.cache_key)
    backbone, transform = enc.backbone.to(enc.device).eval(), enc.transform.to(enc.device)
    with torch.no_grad():
        return _splits(backbone, transform, enc.dm, enc.device, cache)


def frozen_features(
    method: SSLMethod, dm: Any, run_dir: Path | None = None, tag: str = "last"
) -> tuple[Feats, Feats]:
    """(train, val) backbone features of a built method; cached when ``run_dir``.

    The cache is keyed by the identity of the run's ``tag`` checkpoint, so features of
    an older checkpoint are never reused.
    """
    method.eval()
    cache = None
    if run_dir is not None:
        ckpt = checkpoint_path(run_dir, tag)
        cache = (run_dir, tag, {"checkpoint": file_identity(ckpt), "data": _data_key(dm)})
    return _splits(method.backbone, method.eval_view, dm, method.device, cache)


def _data_key(dm: Any) -> dict[str, Any]:
    """What decides the images of a data module (for the feature-cache key)."""
    return {
        "dataset": dm.dataset_name,
        "root": str(dm.root),
        "kwargs": json.loads(json.dumps(dm.dataset_kwargs, default=str)),
        "max_train_samples": dm.max_train_samples,
        "seed": dm.seed,
    }


# ----------------------------------------------------------------------- opening
def config_from(data: dict[str, Any], overrides: list[str]) -> RunConfig:
    """A validated RunConfig from a nested dict plus ``key=value`` overrides."""
    d = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(d, keys, value)
    return from_dict(RunConfig, d)


def setup_data(cfg: RunConfig) -> Any:
    """The set-up data module of ``cfg``."""
    dm = build_datamodule(cfg)
    dm.setup()
    return dm


def open_run_encoder(run_dir: str | Path, overrides: list[str], which: str = "last") -> Encoder:
    """The backbone of a run (no heads, no online classifier) and the data to evaluate.

    Only ``backbone.*`` and the eval transform's normalisation (the training data's
    mean / std) are loaded from the checkpoint, so the data may have any number of
    classes and superclasses.
    """
    run = Path(run_dir)
    cfg = run_config(run, [*overrides, "eval.purity_every_n_steps=0"])
    ckpt = checkpoint_path(run, which)
    dm = setup_data(cfg)
    state = checkpoint_state(ckpt)
    print(f"[hexssl] evaluating {ckpt} (--checkpoint {which})", flush=True)
    try:
        backbone = build_backbone(cfg.backbone.name, **cfg.backbone.kwargs)
    except ValueError as err:
        raise ConfigError(f"backbone: {err}") from None
    backbone.load_state_dict(_prefixed(state, "backbone."))
    augment = build_augmentation("eval", cfg.data.image_size, dm.mean, dm.std)
    norm = _prefixed(state, "eval_augment.")
    if norm:  # the training data's normalisation, which the backbone was trained with
        augment.load_state_dict(norm)
    transform = EvalView(augment)
    key = {"checkpoint": file_identity(ckpt), "data": _data_key(dm)}
    tag = which if which in ("last", "previous") else Path(which).stem
    suffix = result_suffix(tag, run_config(run, []).data, cfg.data)
    return Encoder(cfg, backbone.eval(), transform, dm, run, key, tag, suffix=suffix)


# what decides the images evaluated (batch size and workers do not)
_IMAGE_KEYS = ("dataset", "root", "image_size", "options")


def dataset_tag(root: str | Path) -> str:
    """A short name for a dataset path: ``cifar10-jpeg.tar.gz`` -> ``cifar10-jpeg``."""
    name = Path(root).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        name = name.removesuffix(suffix)
    return name


def data_label(data: Any) -> str:
    """A short file-name label of a data config: the root's name, else the dataset's name
    and a hash of its options (e.g. ``cifar10-jpeg``, ``synthetic-3f2a1c``)."""
    if data.root:
        return dataset_tag(data.root)
    text = json.dumps([data.image_size, data.options], sort_keys=True, default=str)
    return f"{data.dataset}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def result_suffix(tag: str, own: Any, used: Any) -> str:
    """``""`` for the run's last checkpoint on its own data, else ``-<tag>`` / ``-<data>``.

    So ``hexssl knn RUN --data data.root=OTHER`` writes ``knn-OTHER.json`` and never
    overwrites the run's own ``knn.json``.
    """
    parts = [] if tag == "last" else [tag]
    if any(getattr(own, k) != getattr(used, k) for k in _IMAGE_KEYS):
        parts.append(data_label(used))
    return "".join(f"-{p}" for p in parts)


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def open_release_encoder(weights: str | Path, overrides: list[str]) -> Encoder:
    """A released weights file and the data to evaluate it on (default: its training data)."""
    backbone, meta = load_release(weights)
    cfg = config_from({"data": meta.get("data", {})}, overrides)
    t = meta["eval_transform"]
    transform = EvalView(build_augmentation("eval", t["image_size"], t["mean"], t["std"]))
    if cfg.data.image_size != t["image_size"]:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size}, but {weights} was trained at "
            f"{t['image_size']} px; evaluate at its size"
        )
    return Encoder(cfg, backbone, transform, setup_data(cfg))


def open_encoder(target: str | Path, overrides: list[str], which: str = "last") -> Encoder:
    """:func:`open_release_encoder` for a weights file, else :func:`open_run_encoder`."""
    if Path(target).is_file():
        if not is_release(target):
            raise ConfigError(
                f"{target} is a file but not released weights (no {Path(target).stem}.json "
                "beside it); pass a run directory or an exported release"
            )
        return open_release_encoder(target, overrides)
    return open_run_encoder(target, overrides, which)


# ----------------------------------------------------------------------- metrics
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


def linear_summary(
    train: Feats, val: Feats, fractions: list[float], seed: int, epochs: int
) -> dict[str, float]:
    """Linear probe top-1/top-5 per label fraction, class and superclass level."""
    result: dict[str, float] = {}
    for level, i in levels(train, val).items():
        res = linear_eval(
            train[0], train[i], val[0], val[i], fractions=tuple(fractions), seed=seed, epochs=epochs
        )
        result.update({f"linear_{level}_{k}": float(v) for k, v in res.items()})
    return result


def _save(enc: Encoder, name: str, result: dict[str, Any]) -> None:
    """Print the result; write it into the run directory (never beside released weights)."""
    if enc.cache_dir is not None:
        atomic_write_text(enc.cache_dir / name, json.dumps(result, indent=2))
        print(f"wrote {enc.cache_dir / name}")
    for key, value in result.items():
        print(f"{key:>28s}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")


def _open(args: argparse.Namespace) -> Encoder:
    return open_encoder(args.run_dir, list(args.data), args.checkpoint)


def run_knn(args: argparse.Namespace) -> dict[str, float]:
    """``hexssl knn``: weighted kNN, class and superclass, k and T sweepable."""
    enc = _open(args)
    train, val = encoder_features(enc)
    result = knn_summary(train, val, args.k, args.t)
    _save(enc, f"knn{enc.suffix}.json", result)
    return result


def run_linear(args: argparse.Namespace) -> dict[str, float]:
    """``hexssl linear``: offline linear probe at several label fractions."""
    enc = _open(args)
    train, val = encoder_features(enc)
    result = linear_summary(train, val, args.fractions, enc.cfg.seed, args.epochs)
    _save(enc, f"linear{enc.suffix}.json", result)
    return result


def run_umap(args: argparse.Namespace) -> Path:
    """``hexssl umap``: 2-D plot of validation features, coloured by superclass."""
    enc = _open(args)
    _, val = encoder_features(enc)
    if enc.cache_dir is not None:
        name = f"embedding-{args.method}{enc.suffix}.png"
        path, title = enc.cache_dir / name, enc.cache_dir.name
    else:  # released weights: into the working directory, never beside the weights
        title = Path(args.run_dir).stem
        path = Path(f"embedding-{title}-{args.method}.png")
    plot_embedding_2d(val[0], val[1], val[2], path, method=args.method, title=title)
    print(f"wrote {path}")
    return path
