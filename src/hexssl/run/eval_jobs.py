"""Evaluation jobs on trained runs: ``hexssl knn``, ``hexssl linear``, ``hexssl umap``.

The target is a run directory or released weights (``hexssl.export``: a ``.safetensors``
backbone with a JSON naming its architecture, an ``hf`` folder, or an old ``.pt``). Only
the backbone is built and loaded, so ``--data`` may point at a dataset with other classes
and superclasses (transfer evaluation). Features of the frozen backbone are extracted once per (run,
checkpoint, split) and cached under ``<run>/features/``, keyed by the checkpoint's
content and the data config; every probe then runs on the cache.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.backbones import build_backbone
from hexssl.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    from_dict,
    parse_override,
    set_path,
    to_dict,
)
from hexssl.data.tiny_imagenet import build_hint
from hexssl.data.transforms import build_augmentation
from hexssl.eval.features import cached_features, extract_features, file_identity
from hexssl.eval.knn import config_key, knn_eval
from hexssl.eval.linear import fraction_key, linear_eval
from hexssl.eval.plots import plot_embedding_2d
from hexssl.export import (
    WEIGHTS_SUFFIX,
    is_hf_folder,
    is_release,
    load_release,
    release_meta_path,
    releases_in,
    weights_beside,
)
from hexssl.methods.base import SSLMethod
from hexssl.run.atomic import atomic_write_text
from hexssl.run.build import build_datamodule
from hexssl.run.runs import (
    checkpoint_path,
    checkpoint_state,
    checkpoint_tag,
    prefixed_state,
    run_config,
)

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
    label: str = ""  # what the progress bar and the result table call it
    source: str = ""  # the path it was opened from


def _splits(
    backbone: nn.Module,
    transform: Callable[[Tensor], Tensor],
    dm: Any,
    device: torch.device | str,
    cache: tuple[Path, str, dict[str, Any] | None] | None,
    label: str = "",
) -> tuple[Feats, Feats]:
    """(train, val) features with the eval transform, cached when ``cache`` is given;
    a progress bar on a terminal when ``label`` names the backbone.

    The features stay on ``device`` (cached copies are written from the CPU), so kNN and
    the linear probes run where the backbone ran.
    """
    if getattr(dm, "val_set", None) is None:
        raise ConfigError("this dataset has no evaluation split; pass --data data.dataset=...")
    loaders = {"train": dm.train_eval_dataloader(), "val": dm.val_dataloader()}
    out = []
    for split, plain in loaders.items():
        loader = progress(plain, f"{label} {split}") if label else plain
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
        return _splits(backbone, transform, enc.dm, enc.device, cache, enc.label)


def progress(loader: Any, desc: str) -> Any:
    """``loader`` with a tqdm bar on stderr (only on a terminal: logs stay clean)."""
    from tqdm import tqdm

    return tqdm(loader, desc=desc, unit="batch", leave=False, disable=None, mininterval=1.0)


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


def setup_data(cfg: RunConfig, shared: dict[str, Any] | None = None, origin: str = "") -> Any:
    """The set-up data module of ``cfg``; reused from ``shared`` for the same data config,
    so that several backbones evaluated together read the images once.

    ``origin`` says where ``data.root`` came from, for the error when it is missing.
    """
    key = json.dumps(to_dict(cfg)["data"], sort_keys=True, default=str)
    if shared is not None and key in shared:
        return shared[key]
    check_data_root(cfg, origin)
    if shared is not None:  # the command line: decoding an archive can take minutes
        print(f"[hexssl] reading {cfg.data.dataset} {cfg.data.root or ''}".rstrip(), flush=True)
    dm = build_datamodule(cfg)
    dm.setup()
    if shared is not None:
        shared[key] = dm
    return dm


FOLDER_DATASETS = ("imagefolder", "unlabeled")  # read from data.root; never downloaded


def check_data_root(cfg: RunConfig, origin: str = "") -> None:
    """A missing ``data.root`` of an image folder or archive, said as 'no such file'."""
    root = cfg.data.root
    if cfg.data.dataset == "synthetic" and root is not None:
        raise ConfigError(
            f"data.root={root} with data.dataset=synthetic, which reads nothing from disk; "
            "for a folder or archive of images add --data data.dataset=imagefolder"
        )
    if cfg.data.dataset not in FOLDER_DATASETS or root is None:
        return
    if not Path(root).expanduser().exists():
        raise ConfigError(
            f"data.root={root}: no such file or folder{origin}; evaluate on your images "
            "with --data data.root=PATH (an ImageFolder tree or a .tar.gz of one)"
            + build_hint(root)
        )


def open_run_encoder(
    run_dir: str | Path,
    overrides: list[str],
    which: str | None = "last",
    shared: dict[str, Any] | None = None,
) -> Encoder:
    """The backbone of a run (no heads, no online classifier) and the data to evaluate.

    Only ``backbone.*`` and the eval transform's normalisation (the training data's
    mean / std) are loaded from the checkpoint, so the data may have any number of
    classes and superclasses.
    """
    run, which = Path(run_dir), which or "last"
    cfg = run_config(run, [*overrides, "eval.purity_every_n_steps=0"])
    ckpt = checkpoint_path(run, which)
    dm = setup_data(cfg, shared, f" (the data {run} was trained on)" if not overrides else "")
    backbone, state = run_backbone(cfg, ckpt)
    print(f"[hexssl] evaluating {ckpt} (--checkpoint {which})", flush=True)
    augment = build_augmentation("eval", cfg.data.image_size, dm.mean, dm.std)
    norm = prefixed_state(state, "eval_augment.")
    if norm:  # the training data's normalisation, which the backbone was trained with
        augment.load_state_dict(norm)
    transform = EvalView(augment)
    key = {"checkpoint": file_identity(ckpt), "data": _data_key(dm)}
    tag = checkpoint_tag(which)
    suffix = result_suffix(tag, run_config(run, []).data, cfg.data)
    label = f"{run.name} ({ckpt.name})"
    return Encoder(cfg, backbone, transform, dm, run, key, tag, suffix=suffix, label=label)


def run_backbone(cfg: RunConfig, ckpt: Path) -> tuple[nn.Module, dict[str, Tensor]]:
    """(backbone of the run in eval mode with the checkpoint's weights, the checkpoint's
    model state)."""
    state = checkpoint_state(ckpt)
    try:
        backbone = build_backbone(cfg.backbone.name, **cfg.backbone.kwargs)
    except ValueError as err:
        raise ConfigError(f"backbone: {err}") from None
    backbone.load_state_dict(prefixed_state(state, "backbone."))
    return backbone.eval(), state


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


def open_release(weights: str | Path) -> tuple[nn.Module, EvalView, dict[str, Any]]:
    """(backbone in eval mode, its eval transform, its JSON metadata) of released weights."""
    backbone, meta = load_release(weights)
    t = meta["eval_transform"]
    transform = EvalView(build_augmentation("eval", t["image_size"], t["mean"], t["std"]))
    return backbone, transform, meta


def open_release_encoder(
    weights: str | Path, overrides: list[str], shared: dict[str, Any] | None = None
) -> Encoder:
    """Released weights and the data to evaluate them on (default: their training data)."""
    backbone, transform, meta = open_release(weights)
    cfg = config_from({"data": meta.get("data", {})}, overrides)
    size = meta["eval_transform"]["image_size"]
    if cfg.data.image_size != size:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size}, but {weights} was trained at "
            f"{size} px; evaluate at its size"
        )
    where = (
        f" (the data {release_meta_path(weights).name} says it was trained on, a path "
        f"relative to where it was trained, not found from {Path.cwd()})"
    )
    dm = setup_data(cfg, shared, where if not _sets_root(overrides) else "")
    return Encoder(cfg, backbone, transform, dm, label=Path(weights).name)


def _sets_root(overrides: list[str]) -> bool:
    return any(o.split("=", 1)[0].strip() in ("data.root", "data") for o in overrides)


def open_encoder(
    target: str | Path,
    overrides: list[str],
    which: str | None = None,
    shared: dict[str, Any] | None = None,
) -> Encoder:
    """:func:`open_release_encoder` for a weights file, else :func:`open_run_encoder`.

    ``which`` (``--checkpoint``) picks a run's checkpoint (default ``last``); released
    weights are one file, so it is refused for them.
    """
    path = Path(target)
    beside = weights_beside(path) if path.suffix == ".json" else None
    if beside is not None:
        raise ConfigError(
            f"{path} is the architecture file of released weights; pass the weights {beside}"
        )
    if path.is_file() and not is_release(path):
        raise ConfigError(
            f"{target} is a file but not released weights (no {path.stem}.json "
            "beside it); pass a run directory or an exported release"
        )
    if path.is_file() or is_hf_folder(path):  # a release: one set of weights
        if which is not None:
            what = (
                f"{path.name} is released weights, one file"
                if path.is_file()
                else f"{path} is an exported backbone"
            )
            raise ConfigError(
                f"--checkpoint {which}: {what} with no checkpoints to pick; leave "
                "--checkpoint out (it is for run directories)"
            )
        enc = open_release_encoder(path, overrides, shared)
    else:
        enc = open_run_encoder(path, overrides, which, shared)
    enc.source = str(path)
    return enc


def load_backbone(path: str | Path, checkpoint: str = "last") -> tuple[nn.Module, EvalView]:
    """A trained backbone, ready to embed images, and its eval transform.

    Args:
        path: released weights (``WEIGHTS.safetensors`` with its ``WEIGHTS.json``, a
            folder written by ``hexssl export --format hf``, or an old ``WEIGHTS.pt``) or a
            run directory written by ``hexssl pretrain``.
        checkpoint: for a run directory: ``last``, ``previous`` or a ``.ckpt`` file.

    Returns:
        ``(backbone, transform)``: the backbone in eval mode, float32 on the CPU; the
        transform turns uint8 images into the normalised input the backbone was trained
        on (the training data's mean / std, resized to its image size).

    Shape:
        transform: (B, 3, H, W) uint8 -> (B, 3, S, S) float; backbone: -> (B, D).

    Example:
        >>> net, transform = load_backbone(
        ...     "benchmarks/results/hex_study/weights/simclr-s0.safetensors")
        >>> images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)  # any size
        >>> transform(images).shape  # centre crop and resize to the trained size, normalise
        torch.Size([2, 3, 32, 32])
        >>> with torch.no_grad():
        ...     net(transform(images)).shape  # ResNet-18 at width 16
        torch.Size([2, 128])
    """
    p = Path(path)
    release = p.is_file() or p.suffix in (".pt", ".json", WEIGHTS_SUFFIX)
    if release or is_hf_folder(p):
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        backbone, transform, _ = open_release(p)
        return backbone, transform
    cfg = run_config(p, [])
    backbone, state = run_backbone(cfg, checkpoint_path(p, checkpoint))
    norm = prefixed_state(state, "eval_augment.")
    if not norm:
        raise ConfigError(f"{p}: its checkpoint holds no eval normalisation; use hexssl export")
    augment = build_augmentation("eval", cfg.data.image_size, (0.0,) * 3, (1.0,) * 3)
    augment.load_state_dict(norm)
    return backbone, EvalView(augment)


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
        # counts stay integers in the JSON: "10pct_n": 2500, not 2500.0
        result.update({f"linear_{level}_{k}": int(v) if k.endswith("_n") else float(v)
                       for k, v in res.items()})  # fmt: skip
    return result


# ------------------------------------------------------------------ the command line
def eval_targets(targets: list[str], data: list[str]) -> tuple[list[Path], list[str]]:
    """(what to evaluate, ``--data`` overrides) from the command line's words.

    ``--data`` takes every word after it, so a run or weights path written after it lands
    there: such words are moved back. A bare dataset path is refused with the
    ``data.root=`` spelling, and ``--data`` keys outside the data section are refused.
    """
    words, overrides = list(targets), []
    for item in data:
        if "=" in item:
            overrides.append(item)
        elif looks_like_target(Path(item)):
            words.append(item)
        else:
            raise ConfigError(
                f"--data {item}: --data takes KEY=VALUE settings of the data section; for "
                f"images at {item} write --data data.root={item}"
            )
    if not words:
        raise ConfigError(
            "name what to evaluate: a run directory, released weights (WEIGHTS.safetensors) or a "
            "folder of them, e.g. benchmarks/results/hex_study/weights --data data.root=PATH"
        )
    check_data_overrides(overrides)
    return expand_targets(words), overrides


def looks_like_target(path: Path) -> bool:
    """A run directory, a weights file, an ``hf`` folder or a folder holding weights."""
    if path.is_dir():
        return (path / "config.yaml").is_file() or is_hf_folder(path) or bool(releases_in(path))
    return path.suffix in (".pt", WEIGHTS_SUFFIX)


DATA_KEYS = [f.name for f in dataclasses.fields(DataConfig)]


def check_data_overrides(overrides: list[str]) -> None:
    """Every ``--data`` override sets a ``data.*`` key (the schema checks which, at load)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        head = key.split(".")[0]
        if head == "data":
            continue
        if head in DATA_KEYS:
            raise ConfigError(f"--data {item}: write the full key, --data data.{item}")
        raise ConfigError(
            f"--data {item}: {key} is not a data setting; --data only changes the data "
            f"section (data.{', data.'.join(DATA_KEYS[:4])}, ...)"
        )


def expand_targets(words: list[str]) -> list[Path]:
    """Run directories and released weights; a folder of them gives each one in it (sorted)."""
    out: list[Path] = []
    for word in words:
        path = Path(word)
        if path.is_dir() and not (path / "config.yaml").is_file() and not is_hf_folder(path):
            inside = releases_in(path)
            inside += sorted(d for d in path.iterdir() if (d / "config.yaml").is_file())
            if not inside:
                raise ConfigError(
                    f"{path} is neither a run directory (no config.yaml) nor a folder of "
                    "released weights (no WEIGHTS.safetensors with its WEIGHTS.json)"
                )
            out.extend(inside)
        elif path.exists():
            out.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    return list(dict.fromkeys(out))


def open_all(args: argparse.Namespace) -> list[Encoder]:
    """The encoders named on the command line; the data is read once per data config."""
    targets, overrides = eval_targets(list(args.targets), list(args.data))
    shared: dict[str, Any] = {}
    encoders: list[Encoder] = []
    for target in targets:
        enc = open_encoder(target, overrides, args.checkpoint, shared)
        if len(shared) > len({id(e.dm) for e in encoders}):  # first use of this data
            print(data_line(enc), flush=True)
        encoders.append(enc)
    return encoders


def data_line(enc: Encoder) -> str:
    """One line: the images evaluated on, their count and resolution, the decode cache."""
    from hexssl.data.base import cache_dir

    d = enc.cfg.data
    where = f" {d.root}" if d.root else ""
    n_train, n_val = len(enc.dm.train_set), len(enc.dm.val_set or [])
    size = d.options.get("image_size", d.image_size)
    resize = (
        f"; every image centre-cropped and resized to {size} px at load"
        if d.dataset in FOLDER_DATASETS and "image_size" in d.options
        else ""
    )
    cache = f"; decode cache: {cache_dir()}" if d.dataset in FOLDER_DATASETS else ""
    return (
        f"[hexssl] data: {d.dataset}{where}, {n_train} train (memory bank) / {n_val} val "
        f"(queries) images, evaluated at {d.image_size} px{resize}{cache}"
    )


def features_of(enc: Encoder) -> tuple[Feats, Feats]:
    """:func:`encoder_features` with one line saying how long it took."""
    start = time.time()
    feats = encoder_features(enc)
    n = feats[0][0].shape[0] + feats[1][0].shape[0]
    print(f"[hexssl] {enc.label}: features of {n} images ({time.time() - start:.0f} s)")
    return feats


def short_names(sources: list[str]) -> dict[str, str]:
    """Row names: each run's or weights' own name, its full path where two share one."""
    stems = [Path(s).stem if Path(s).suffix in (".pt", WEIGHTS_SUFFIX) else Path(s).name
             for s in sources]  # fmt: skip
    return {s: n if stems.count(n) == 1 else s for s, n in zip(sources, stems)}


def _save(enc: Any, name: str, result: dict[str, Any]) -> None:
    """Write a run's result into its directory (never beside released weights)."""
    if enc.cache_dir is not None:
        atomic_write_text(enc.cache_dir / name, json.dumps(result, indent=2))
        print(f"wrote {enc.cache_dir / name}")


def write_out(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    """``--out FILE``: every result in one JSON file; else say how to keep them."""
    if args.out is None:
        if any(not Path(t).is_dir() for t in results):
            print("(pass --out FILE.json to keep these results in a file)")
        return
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "out", "targets")}
    payload = {"command": args.command, "settings": settings, "results": results}
    atomic_write_text(Path(args.out), json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


def table(head: list[str], rows: list[list[str]]) -> str:
    """A plain text table, columns aligned (names left, numbers right)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = [str.ljust] + [str.rjust] * (len(head) - 1)

    def line(r: list[str]) -> str:
        return "  ".join(f(c, w) for f, c, w in zip(fmt, r, widths)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


LEVEL_NAMES = {"class": "class", "super": "superclass"}


def knn_table(results: dict[str, dict[str, float]], k: list[int], t: list[float]) -> str:
    """One row per backbone: top-1 / top-5 per level at each (k, T)."""
    pairs = [(ki, ti) for ki in k for ti in t]
    cols = [
        (f"{LEVEL_NAMES[lv]} @{top}" + (f" k={ki} T={ti:g}" if len(pairs) > 1 else ""),
         f"knn_{lv}_{config_key(ki, ti)}_top{top}")
        for lv in LEVEL_NAMES for ki, ti in pairs for top in (1, 5)
    ]  # fmt: skip
    cols = [c for c in cols if any(c[1] in r for r in results.values())]
    rows = [[name] + [f"{r[key]:.2f}" if key in r else "-" for _, key in cols]
            for name, r in results.items()]  # fmt: skip
    title = f"kNN accuracy (%), k={k[0]}, T={t[0]:g}" if len(pairs) == 1 else "kNN accuracy (%)"
    return title + "\n" + table(["backbone", *(c[0] for c in cols)], rows)


def linear_table(results: dict[str, dict[str, float]], fractions: list[float]) -> str:
    """One row per backbone: top-1 per level and label fraction; the label counts under it."""
    cols = [
        (f"{LEVEL_NAMES[lv]} {fraction_key(f).removesuffix('pct')}% @1",
         f"linear_{lv}_{fraction_key(f)}_top1")
        for lv in LEVEL_NAMES for f in fractions
    ]  # fmt: skip
    cols = [c for c in cols if any(c[1] in r for r in results.values())]
    rows = [[name] + [f"{r[key]:.2f}" if key in r else "-" for _, key in cols]
            for name, r in results.items()]  # fmt: skip
    first = next(iter(results.values()), {})
    counts = ", ".join(
        f"{fraction_key(f).removesuffix('pct')}%: {int(first[n])}"
        for f in fractions
        if (n := f"linear_class_{fraction_key(f)}_n") in first
    )
    note = f"\nlabelled train images: {counts} (top-5: --out FILE)" if counts else ""
    return "linear probe accuracy (%)\n" + table(["backbone", *(c[0] for c in cols)], rows) + note


def _evaluate(
    args: argparse.Namespace,
    kind: str,
    score: Callable[[Encoder, Feats, Feats], dict[str, float]],
) -> dict[str, dict[str, float]]:
    """Open every target, score each, write the run files and ``--out``; by target."""
    results: dict[str, dict[str, float]] = {}
    for enc in open_all(args):
        train, val = features_of(enc)
        results[enc.source] = score(enc, train, val)
        _save(enc, f"{kind}{enc.suffix}.json", results[enc.source])
    write_out(args, results)
    names = short_names(list(results))
    return {names[k]: v for k, v in results.items()}


def run_knn(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """``hexssl knn``: weighted kNN, class and superclass, k and T sweepable."""

    def score(enc: Encoder, train: Feats, val: Feats) -> dict[str, float]:
        return knn_summary(train, val, args.k, args.t)

    shown = _evaluate(args, "knn", score)
    print(knn_table(shown, args.k, args.t))
    return shown


def run_linear(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """``hexssl linear``: offline linear probe at several label fractions."""

    def score(enc: Encoder, train: Feats, val: Feats) -> dict[str, float]:
        return linear_summary(train, val, args.fractions, enc.cfg.seed, args.epochs)

    shown = _evaluate(args, "linear", score)
    print(linear_table(shown, args.fractions))
    return shown


def run_umap(args: argparse.Namespace) -> Path:
    """``hexssl umap``: 2-D plot of validation features, coloured by superclass."""
    encoders = open_all(args)
    if len(encoders) != 1:
        raise ConfigError(f"umap plots one backbone; {len(encoders)} were given")
    enc = encoders[0]
    _, val = features_of(enc)
    if enc.cache_dir is not None:
        name = f"embedding-{args.method}{enc.suffix}.png"
        path, title = enc.cache_dir / name, enc.cache_dir.name
    else:  # released weights: the working directory, never beside the weights
        title = Path(enc.label).stem
        path = Path(f"embedding-{title}-{args.method}.png")
    path = Path(args.out) if args.out else path
    plot_embedding_2d(val[0], val[1], val[2], path, method=args.method, title=title)
    print(f"wrote {path}")
    return path
