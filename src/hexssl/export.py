"""``hexssl export`` and released backbones: weights in safetensors, architecture in JSON.

A released backbone comes in one of three shapes, all read by :func:`load_release`
(and so by ``hexssl.load_backbone``, ``hexssl knn`` and ``hexssl linear``):

* ``NAME.safetensors`` with ``NAME.json`` beside it (the *sidecar*: the backbone's name
  and constructor options, its eval transform, where it came from);
* a Hugging Face-style folder (``--format hf``): ``config.json`` (the sidecar's fields),
  ``model.safetensors`` and a ``README.md`` model card;
* ``NAME.pt`` with ``NAME.json``: the pickled releases hexssl wrote before it used
  safetensors. They still load (``torch.load(weights_only=True)``: tensors only), with a
  one-time note to convert them: ``hexssl export NAME.pt --format safetensors``.

safetensors files hold tensors and a JSON header, nothing that could run code when read.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from hexssl.backbones import EXPORT_FORMATS, build_backbone, export_state_dict
from hexssl.config import ConfigError, RunConfig, to_dict
from hexssl.run.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text
from hexssl.run.checkpoints import epochs_done, load_checkpoint, load_safetensors, safe_load
from hexssl.run.runs import checkpoint_path, checkpoint_tag, prefixed_state, run_config

RELEASE_FORMAT = "hexssl-backbone/2"  # the sidecar / config.json schema; weights in safetensors
OLD_FORMATS = ("hexssl-backbone-fp16/1",)  # the same fields, weights in a .pt pickle
WEIGHTS_SUFFIX = ".safetensors"
HF_CONFIG, HF_WEIGHTS, HF_CARD = "config.json", "model.safetensors", "README.md"
FORMATS = ("safetensors", "hf", *EXPORT_FORMATS)  # what ``hexssl export --format`` writes

Results = dict[str, dict[str, Any] | None]  # {"knn": ..., "linear": ...} as the run wrote them
_noted_pickle = False  # the note about .pt releases is printed once per process


# ------------------------------------------------------------------ hexssl export
def export_run(
    source: str | Path, fmt: str, out: str | Path | None = None, which: str = "last"
) -> Path:
    """Write the backbone of a run directory or of released weights as ``fmt``.

    Args:
        source: a run directory (its ``which`` checkpoint), or released weights (a
            ``.safetensors`` or old ``.pt`` file with its JSON, or an ``hf`` folder).
        fmt: ``safetensors`` (weights + ``NAME.json``), ``hf`` (a folder with
            ``config.json``, ``model.safetensors``, ``README.md``) or one of
            ``torchvision``, ``timm``, ``state_dict`` (a ``{name: tensor}`` ``.pt``; see
            ``hexssl.backbones.export_state_dict`` for loading it into those libraries).
        out: the file (a folder for ``hf``); the default is beside the source:
            ``<run>/backbone.safetensors``, ``<run>/backbone-hf``, ``<run>/backbone-<fmt>.pt``,
            or ``NAME.safetensors``, ``NAME-hf``, ``NAME-<fmt>.pt`` for released weights.
        which: the checkpoint of a run (``last``, ``previous`` or a ``.ckpt`` file).

    Returns:
        The path written. From a run the tensors keep the checkpoint's float32; from
        released weights they stay as stored (fp16 for the HEX study's).
    """
    src = Path(source)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if src.is_file() or is_hf_folder(src):  # released weights (with or without their JSON)
        if which != "last":
            raise ConfigError(f"--checkpoint {which}: {src} is released weights, not a run")
        state, meta = read_release(src, note=False)  # converting is what the note asks
        dest = Path(out) if out else _default_out(release_stem(src), fmt, src)
        results: Results = {}
    else:
        state, meta, results = run_release(src, which)
        dest = Path(out) if out else _default_out(src / "backbone", fmt, src)
    backbone = fitted_backbone(state, meta, src)  # nothing is written from a bad file
    if fmt == "safetensors":
        return write_release(state, dest, meta)
    if fmt == "hf":
        return write_hf(state, dest, meta, results, int(backbone.num_features))  # type: ignore[arg-type]
    atomic_torch_save(_export(backbone, fmt), dest)
    return dest


def _export(backbone: nn.Module, fmt: str) -> dict[str, Tensor]:
    try:
        return export_state_dict(backbone, fmt)
    except ValueError as err:  # e.g. torchvision with a width other than 64
        raise ConfigError(f"--format {fmt}: {err}") from None


def _default_out(stem: Path, fmt: str, src: Path) -> Path:
    """``stem.safetensors``, ``stem-hf`` or ``stem-<fmt>.pt``, never the source itself."""
    names = {"safetensors": stem.name + WEIGHTS_SUFFIX, "hf": stem.name + "-hf"}
    dest = stem.with_name(names.get(fmt, f"{stem.name}-{fmt}.pt"))
    if dest.resolve() == src.resolve():
        raise ConfigError(f"{src} already is {fmt}; pass --out to write a copy elsewhere")
    return dest


def run_release(run: Path, which: str) -> tuple[dict[str, Tensor], dict[str, Any], Results]:
    """(float32 backbone tensors, release metadata, the run's kNN / linear results for this
    checkpoint on its own data, where they were computed) of a run's checkpoint."""
    cfg = run_config(run)
    ckpt_file = checkpoint_path(run, which)
    ckpt = load_checkpoint(ckpt_file)
    model = ckpt["state_dict"]
    state = prefixed_state(model, "backbone.")
    norm = prefixed_state(model, "eval_augment.")
    mean = next((v for k, v in norm.items() if k.endswith("mean")), None)
    std = next((v for k, v in norm.items() if k.endswith("std")), None)
    if mean is None or std is None:
        raise ConfigError(f"{ckpt_file} holds no eval normalisation (a run from an old hexssl)")
    meta = release_meta(
        cfg.backbone.name,
        cfg.backbone.kwargs,
        cfg.data.image_size,
        mean.flatten().tolist(),
        std.flatten().tolist(),
        run_provenance(cfg, ckpt, which),
    )
    tag = checkpoint_tag(which)
    results = {kind: _read_json(run / f"{kind}{'' if tag == 'last' else '-' + tag}.json")
               for kind in ("knn", "linear")}  # fmt: skip
    return state, meta, results


def run_provenance(cfg: RunConfig, ckpt: dict[str, Any], which: str) -> dict[str, Any]:
    """What a release says about its training: method, HEX, loss, data, length, source."""
    d = to_dict(cfg)
    hex_cfg = d["hex"] if cfg.hex.enabled else None
    return {
        "method": cfg.method.name,
        "hex": hex_cfg,
        "loss": d["loss"] if cfg.loss.denominator != "infonce" else None,
        "data": {k: d["data"][k] for k in ("dataset", "root", "image_size", "options")},
        "epochs": epochs_done(ckpt),
        "steps": int(ckpt.get("global_step", 0)),
        "batch_size": cfg.data.batch_size,
        "seed": cfg.seed,
        "source": {"run": cfg.name, "checkpoint": which},
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------ released weights
def release_meta(
    name: str,
    kwargs: dict[str, Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar / ``config.json`` of a release: architecture, eval transform, extras.

    The writers (:func:`write_release`, :func:`write_hf`) put the format and the weights
    file's name first."""
    return {
        "backbone": {"name": name, "kwargs": dict(kwargs)},
        "eval_transform": {"image_size": image_size, "mean": list(mean), "std": list(std)},
        **(extra or {}),
    }


def release_meta_path(weights: str | Path) -> Path:
    """Where the metadata of a release lives: ``NAME.json`` beside ``NAME.<ext>``, or an
    ``hf`` folder's ``config.json``."""
    p = Path(weights)
    return p / HF_CONFIG if p.is_dir() else p.with_suffix(".json")


def release_stem(path: Path) -> Path:
    """``NAME`` of ``NAME.safetensors`` / ``NAME.pt``; an ``hf`` folder is its own stem."""
    return path if path.is_dir() else path.with_suffix("")


def export_release(
    backbone: nn.Module,
    path: str | Path,
    name: str,
    kwargs: dict[str, Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a backbone as a small fp16 ``.safetensors`` plus a JSON naming its architecture.

    The JSON holds what evaluating the weights needs without the run directory: the
    backbone ``name`` and ``kwargs`` for ``build_backbone``, and the eval transform (image
    size, normalisation mean / std of the training data). Floating tensors are stored as
    float16 (a ResNet-18 at width 16 is about 1.4 MB) unless float16 cannot hold them
    (see :func:`release_tensor`); integer buffers are kept.

    Example:
        >>> export_release(net, "w/simclr-s0.safetensors", "resnet18",
        ...                {"stem": "cifar", "width": 16}, 32, mean, std)  # doctest: +SKIP
    """
    state = {k: release_tensor(k, v) for k, v in backbone.state_dict().items()}
    return write_release(state, Path(path), release_meta(name, kwargs, image_size, mean, std,
                                                         extra))  # fmt: skip


def write_release(state: dict[str, Tensor], path: Path, meta: dict[str, Any]) -> Path:
    """``path`` (``.safetensors``) and its ``.json`` sidecar, each written atomically."""
    if path.suffix != WEIGHTS_SUFFIX:
        raise ConfigError(
            f"{path}: released weights are written as NAME{WEIGHTS_SUFFIX} (the architecture "
            "goes to NAME.json beside it); pick a name ending in .safetensors"
        )
    _write_safetensors(state, path)
    meta = _headed(meta, format=RELEASE_FORMAT, weights=path.name)
    atomic_write_text(release_meta_path(path), json.dumps(meta, indent=2) + "\n")
    return path


def write_hf(
    state: dict[str, Tensor],
    folder: Path,
    meta: dict[str, Any],
    results: Results | None = None,
    num_features: int | None = None,
) -> Path:
    """A Hugging Face-style folder: ``config.json``, ``model.safetensors``, ``README.md``
    (the model card, with ``results``: ``{"knn": knn.json, "linear": linear.json}``).
    ``num_features``: the backbone's, when the caller has built it (else built here)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; --format hf writes a folder")
    meta = _headed(meta, format=RELEASE_FORMAT, weights=HF_WEIGHTS, library_name="hexssl")
    if num_features is None:
        num_features = int(build_release_backbone(meta, folder).num_features)  # type: ignore[arg-type]
    meta["num_features"] = num_features
    _write_safetensors(state, folder / HF_WEIGHTS)
    atomic_write_text(folder / HF_CONFIG, json.dumps(meta, indent=2) + "\n")
    atomic_write_text(folder / HF_CARD, model_card(meta, results or {}))
    return folder


def _headed(meta: dict[str, Any], **first: Any) -> dict[str, Any]:
    """``meta`` with ``first``'s keys set and placed first (they replace older values, e.g.
    the weights file of a release being converted)."""
    return {**first, **{k: v for k, v in meta.items() if k not in first}}


def _write_safetensors(state: dict[str, Tensor], path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    data = safetensors.torch.save(tensors, metadata={"format": "pt", "hexssl": RELEASE_FORMAT})
    atomic_write_bytes(path, data)


FP16_MAX = torch.finfo(torch.float16).max  # 65504


def release_tensor(name: str, v: Tensor) -> Tensor:
    """``v`` as stored in a release: float16, or float32 where float16 would overflow.

    BatchNorm running variances pass 65504 in practice (Barlow Twins' projector-driven
    activations: up to 7e5 in the HEX study's ResNet-18 at width 16); as float16 they
    become inf and the network's outputs NaN, so those tensors stay float32.
    """
    v = v.detach().cpu()
    if not v.is_floating_point():
        return v
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} holds non-finite values: the backbone cannot be released")
    return v.float() if v.numel() and float(v.abs().max()) > FP16_MAX else v.half()


def is_release(path: str | Path) -> bool:
    """True for a released weights file (a file with its architecture JSON beside it)."""
    p = Path(path)
    return p.suffix != ".json" and p.is_file() and release_meta_path(p).is_file()


def is_hf_folder(path: str | Path) -> bool:
    """True for a folder that holds an ``hf`` export (``config.json`` or ``model.safetensors``)
    and is not a run directory (``config.yaml``)."""
    p = Path(path)
    hf = p.is_dir() and ((p / HF_CONFIG).is_file() or (p / HF_WEIGHTS).is_file())
    return hf and not (p / "config.yaml").is_file()


def releases_in(folder: Path) -> list[Path]:
    """The released weights in a folder, sorted: ``NAME.safetensors`` (or an old
    ``NAME.pt`` with no ``.safetensors`` beside it) with its JSON, and ``hf`` subfolders."""
    files = sorted(p for p in folder.iterdir() if is_release(p))
    newer = {p.stem for p in files if p.suffix == WEIGHTS_SUFFIX}
    files = [p for p in files if p.suffix == WEIGHTS_SUFFIX or p.stem not in newer]
    return files + sorted(p for p in folder.iterdir() if is_hf_folder(p))


def weights_beside(meta_file: Path) -> Path | None:
    """The weights a sidecar ``NAME.json`` belongs to, if one is there."""
    for suffix in (WEIGHTS_SUFFIX, ".pt"):
        if meta_file.with_suffix(suffix).is_file():
            return meta_file.with_suffix(suffix)
    return None


def read_release(path: str | Path, note: bool = True) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors as stored, metadata) of released weights: a file with its JSON, or an
    ``hf`` folder. Every problem is one ConfigError (or FileNotFoundError) line.
    ``note``: say (once per process) that an old ``.pt`` should be converted."""
    path = Path(path)
    if path.suffix == ".json" and path.is_file():
        beside = weights_beside(path)
        what = f"the weights {beside}" if beside else "the weights file, not its JSON"
        raise ConfigError(f"{path} is the architecture file of released weights; pass {what}")
    if path.is_dir():
        if not (path / HF_CONFIG).is_file():
            raise ConfigError(
                f"{path} has no {HF_CONFIG}: an hf export is a folder with {HF_CONFIG} (the "
                f"architecture), {HF_WEIGHTS} and {HF_CARD}; export it again with "
                "hexssl export RUN_DIR --format hf"
            )
        weights = path / HF_WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: no {HF_WEIGHTS} beside its {HF_CONFIG}")
    else:
        weights = path
    meta = read_meta(release_meta_path(path), weights)
    state = read_weights(weights)
    if note and weights.suffix != WEIGHTS_SUFFIX:
        _note_pickle(weights)
    return state, meta


def read_meta(meta_file: Path, weights: Path) -> dict[str, Any]:
    """The checked JSON metadata of a release."""
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"{weights}: no architecture file {meta_file.name} beside the weights; keep each "
            "weights file with the JSON exported with it"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{meta_file} is not valid JSON ({err}); fetch it again") from None
    known = (RELEASE_FORMAT, *OLD_FORMATS)
    if not isinstance(meta, dict) or meta.get("format") not in known:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigError(f"{meta_file}: format {got!r}, expected {RELEASE_FORMAT}")
    for key in ("backbone", "eval_transform"):
        if not isinstance(meta.get(key), dict):
            raise ConfigError(f"{meta_file}: no {key!r} section; export the weights again")
    return meta


def read_weights(weights: Path) -> dict[str, Tensor]:
    """The tensors of a weights file: safetensors, or an old ``.pt`` pickle."""
    if weights.suffix == WEIGHTS_SUFFIX:
        return load_safetensors(weights, "released weights")
    state = safe_load(weights, "released weights")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"released weights {weights} hold no tensor dict; export them again")
    return state


def _note_pickle(weights: Path) -> None:
    """Say once per process that ``.pt`` releases should be converted to safetensors."""
    global _noted_pickle
    if _noted_pickle:
        return
    _noted_pickle = True
    print(
        f"[hexssl] note: {weights} is an old pickled release; it loads, but releases are "
        f"safetensors now: convert it once with hexssl export {weights} --format safetensors",
        file=sys.stderr,
        flush=True,
    )


def build_release_backbone(meta: dict[str, Any], where: Path) -> nn.Module:
    """The untrained backbone a release's metadata names."""
    spec = meta["backbone"]
    try:
        return build_backbone(spec["name"], **spec.get("kwargs", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot build its backbone {spec} ({err})") from None


def _as_float(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_release(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(float32 backbone in eval mode, its metadata) of released weights.

    ``path`` is ``NAME.safetensors`` (or an old ``NAME.pt``) with ``NAME.json`` beside it,
    or a folder written by ``hexssl export --format hf``. Nothing in these files can run
    code when loaded.
    """
    path = Path(path)
    state, meta = read_release(path)
    return fitted_backbone(state, meta, path), meta


def fitted_backbone(state: dict[str, Tensor], meta: dict[str, Any], path: Path) -> nn.Module:
    """The backbone ``meta`` names with ``state`` loaded (float32, eval mode); one
    ConfigError line when the tensors are not finite or do not fit it."""
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ConfigError(
            f"{path}: non-finite values in {broken[:3]} (float16 overflow in an export "
            "before hexssl kept such tensors float32); export the run again"
        )
    backbone = build_release_backbone(meta, path)
    try:
        backbone.load_state_dict(_as_float(state))
    except RuntimeError as err:  # missing / unexpected keys, other shapes
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:200]
        raise ConfigError(
            f"{path} does not fit the architecture in {release_meta_path(path).name} "
            f"({detail}); keep each weights file with the JSON exported with it"
        ) from None
    return backbone.eval()


# ------------------------------------------------------------------ the model card
def model_card(meta: dict[str, Any], results: Results) -> str:
    """The ``README.md`` of an ``hf`` folder: what was trained, how well, how to load it."""
    spec, tr = meta["backbone"], meta["eval_transform"]
    arch = f"{spec['name']} ({', '.join(f'{k}={v}' for k, v in spec.get('kwargs', {}).items())})"
    method = str(meta.get("method") or meta.get("arm") or "unknown")
    rows = [
        ("backbone", arch),
        ("method", method),
        ("HEX", _hex_text(meta.get("hex"), meta.get("loss"), method)),
        ("data", _data_text(meta.get("data"))),
        ("training", _length_text(meta)),
        ("input", f"{tr['image_size']} px, mean {_floats(tr['mean'])}, std {_floats(tr['std'])}"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    tags = ["self-supervised-learning", "hexssl", method] + (["hex"] if meta.get("hex") else [])
    return f"""---
library_name: hexssl
tags: [{", ".join(tags)}]
---

# {method} backbone trained with hexssl

An image backbone, {arch}, trained self-supervised with hexssl, a library built
around HEX (Hierarchical Emergence eXploitation, arXiv:2410.23200). It maps images to
{meta.get("num_features", "D")}-dimensional features.

| | |
|---|---|
{table}

## Results of the run

{_results_text(results)}

## Loading

With hexssl installed: the backbone and the transform it was trained with.

```python
import torch, hexssl

net, transform = hexssl.load_backbone("THIS_FOLDER")
images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)   # any size, uint8 RGB
with torch.no_grad():
    feats = net(transform(images))   # centre crop, resize to {tr["image_size"]} px, normalise
```

With plain torch and safetensors (the architecture is `hexssl.backbones.build_backbone`;
ResNets of width 64 also load into torchvision's, see `hexssl export --format torchvision`):

```python
import json, torch
from safetensors.torch import load_file
from hexssl.backbones import build_backbone

cfg = json.load(open("THIS_FOLDER/config.json"))
net = build_backbone(cfg["backbone"]["name"], **cfg["backbone"]["kwargs"]).eval()
state = load_file("THIS_FOLDER/model.safetensors")
net.load_state_dict({{k: v.float() if v.is_floating_point() else v for k, v in state.items()}})
t = cfg["eval_transform"]
mean = torch.tensor(t["mean"]).view(1, 3, 1, 1)
std = torch.tensor(t["std"]).view(1, 3, 1, 1)
x = images.float() / 255                  # uint8 (B, 3, S, S) with S = t["image_size"]
with torch.no_grad():
    feats = net((x - mean) / std)
```
"""


def _floats(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _hex_text(hex_cfg: Any, loss: Any, method: str) -> str:
    if not isinstance(hex_cfg, dict):
        denominator = loss.get("denominator") if isinstance(loss, dict) else None
        return f"off (denominator: {denominator})" if denominator else "off"
    keys = ["variant", "threshold"]
    if hex_cfg.get("threshold") == "adaptive":
        keys += ["q", "per_anchor", "ema"]
    elif hex_cfg.get("threshold") == "fixed":
        keys += ["eps0", "schedule", "step_down", "epoch_step", "eps_min"]
    keys += ["beta", "tau_plus", "lambda_local", "warmup_epochs"]
    if method in ("byol", "barlow", "vicreg"):  # HEX as a weighted extra term (docs/hex.md 6)
        keys += ["alpha", "temperature"]
    return ", ".join(f"{k} {hex_cfg[k]}" for k in keys if k in hex_cfg)


def _count(n: Any, unit: str) -> str | None:
    return None if n is None else f"{n} {unit}{'' if n == 1 else 's'}"


def _data_text(data: Any) -> str:
    if not isinstance(data, dict):
        return "unknown"
    where = f" at {data['root']}" if data.get("root") else ""
    return f"{data.get('dataset')}{where}, {data.get('image_size')} px"


def _length_text(meta: dict[str, Any]) -> str:
    parts = [_count(meta.get("epochs"), "epoch"), _count(meta.get("steps"), "step"),
             f"batch {meta['batch_size']}" if "batch_size" in meta else None,
             f"seed {meta['seed']}" if "seed" in meta else None]  # fmt: skip
    return ", ".join(p for p in parts if p) or "unknown"


def _linear_table(lin: dict[str, Any]) -> list[str]:
    """Markdown rows: linear probe top-1 per level (rows) and label fraction (columns)."""
    fractions = list(dict.fromkeys(m.group(2) for k in lin if (m := LINEAR_KEY.match(k))))
    head = ["linear probe top-1 (%)", *(f"{f}% of the labels" for f in fractions)]
    rows = [" | ".join(head), "|".join(["---"] * len(head))]
    for level, name in LEVELS.items():
        cells = [lin.get(f"linear_{level}_{f}pct_top1") for f in fractions]
        if any(isinstance(c, float | int) for c in cells):
            text = [f"{c:.2f}" if isinstance(c, float | int) else "-" for c in cells]
            rows.append(" | ".join([name, *text]))
    return rows


KNN_KEY = re.compile(r"knn_class_(k\d+_T[\d.]+)_top1$")
LINEAR_KEY = re.compile(r"linear_(class|super)_(\d+)pct_top1$")
LEVELS = {"class": "class", "super": "superclass"}


def _results_text(results: Results) -> str:
    lines = []
    knn = results.get("knn")
    if knn:
        setting = next((m.group(1) for k in knn if (m := KNN_KEY.match(k))), "")
        cells = [f"{LEVELS[lv]} {knn[f'knn_{lv}_top1']:.2f}" for lv in LEVELS
                 if f"knn_{lv}_top1" in knn]  # fmt: skip
        lines.append(f"- kNN top-1 (%, {setting.replace('_', ' ')}): " + ", ".join(cells))
    lin = results.get("linear")
    if lin:
        lines += ["", *_linear_table(lin)]
    if lines:
        lines.insert(0, "On the data it was trained on (val split; the train split is the "
                        "kNN memory bank and the probe's training set):\n")  # fmt: skip
    if not lines:
        return (
            "Not evaluated before export (run `hexssl knn RUN` and `hexssl linear RUN`, then "
            "export again, to list them here)."
        )
    return "\n".join(lines)
