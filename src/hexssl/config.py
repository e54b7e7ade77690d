"""Typed run configuration: dataclass schema, YAML loading, CLI overrides, validation.

Every key is checked when the config loads: an unknown key fails with the closest valid
names, and a value of the wrong type fails with the key, the value and the expected
type. Overrides use dotted paths (``optim.lr=0.3 hex.variant=reference``); values are
parsed as YAML scalars.

A run composes YAML files left to right (later ones win, sections merge key by key),
e.g. a method, a dataset and the CPU overlay (configs/README.md), given as paths or as
the names of the presets shipped in the package (``simclr cifar10-cpu``). Inside a file,
``defaults:`` names base files (one or a list) that it extends, and ``by_method:`` holds
settings for particular methods (``{byol: {optim: {lr: 1.0}}}``), applied right after the
file's own keys when the run's method is one of them: that is where a dataset file keeps
each method's recipe for that dataset (queue sizes, solo-learn learning rates).

Example:
    >>> cfg = load_config(None, ["method.name=simclr", "hex.enabled=true"])
    >>> cfg.hex.enabled
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from hexssl.errors import ConfigError

# The names of hexssl.methods.METHODS, here so that loading a config needs neither torch
# nor the methods (which import this module): a by_method typo fails at load. The
# registry refuses to differ from this list when it is imported.
METHOD_NAMES = ("simclr", "moco_v2", "moco_v3", "nnclr", "all4one", "byol", "barlow", "vicreg")


@dataclass
class MethodConfig:
    """The SSL method and its own hyperparameters (``params`` is checked per method)."""

    name: str = "simclr"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class BackboneConfig:
    """Backbone name and constructor options (stem, width, img_size, patch_size)."""

    name: str = "resnet18"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"stem": "cifar"})


@dataclass
class HexConfig:
    """HEX_SPEC 4-6. ``enabled=false`` trains the plain method."""

    enabled: bool = False
    variant: str = "paper"
    threshold: str = "adaptive"  # adaptive | fixed | superclass_oracle (uses labels!)
    q: float = 0.99
    per_anchor: bool = False
    ema: float = 0.0
    eps0: float = 0.9
    schedule: str = "constant"
    step_down: float = 0.1
    epoch_step: float = 100.0
    eps_min: float = 0.3
    beta: float = 1.0
    tau_plus: float = 0.1
    lambda_local: float = 1.0
    warmup_epochs: float = 10.0
    detach_weights: bool = False
    fused: bool = False  # the HEX maths as one torch.compile graph (GPU: fewer kernel launches)
    alpha: float = 0.1  # weight of the HEX term for non-contrastive methods (spec 6)
    temperature: float = 0.1  # temperature of that HEX term


@dataclass
class LossConfig:
    """The InfoNCE denominator when HEX is off: HEX's relatives (docs/RELATIVES.md).

    ``denominator``: infonce (plain, default), decoupled (DCL; DCLW with ``sigma``),
    debiased (``tau_plus``) or hard (HCL: ``beta``, ``tau_plus``). The other keys are null
    for the denominator's default; one the chosen denominator does not read is refused.
    """

    denominator: str = "infonce"
    beta: float | None = None  # hard: importance hardness (default 1.0)
    tau_plus: float | None = None  # debiased, hard: class prior in [0, 1) (default 0.1)
    sigma: float | None = None  # decoupled: DCLW's von Mises-Fisher sigma; null = DCL
    detach_weights: bool | None = None  # hard, decoupled with sigma (default false)


@dataclass
class DataConfig:
    """Dataset, loading and augmentation."""

    dataset: str = "synthetic"
    root: str | None = None
    image_size: int = 32
    batch_size: int = 256
    num_workers: int = 0
    augment: str | None = None  # None: the method's default preset
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific (e.g. n_classes)
    aug_overrides: dict[str, Any] = field(default_factory=dict)
    on_device: bool = False  # keep in-memory datasets on the GPU as uint8 (no copy per step)
    pin_memory: bool | None = None  # page-locked batches for async copies; None: on GPU runs


@dataclass
class OptimConfig:
    """Optimiser and LR schedule; lr is per 256 images and scaled with the global batch."""

    name: str = "lars"
    lr: float = 0.3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    eta: float = 0.02  # LARS trust coefficient
    exclude_bias_norm: bool = True
    warmup_epochs: float = 10.0
    min_lr_ratio: float = 0.0
    scale_lr: bool = True
    classifier_lr: float = 0.1  # online linear probe (its own LR, SGD)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class TrainerConfig:
    """Lightning Trainer settings."""

    max_epochs: int = 100
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32"
    accumulate_grad_batches: int = 1
    sync_batchnorm: bool = False  # multi-GPU DDP: BatchNorm statistics over the global batch
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 200
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    check_val_every_n_epoch: int = 1
    progress_bar: bool = True
    channels_last: bool = True  # NHWC activations: faster convolutions on CPU (AMX) and GPU
    compile: bool = False  # torch.compile the backbone and heads (eager if it fails)
    # torch.compile each contrastive loss as a whole (threshold, pairing, denominator):
    # fewer kernel launches on a GPU; one graph per loss on the GPU path (eager if it fails)
    compile_loss: bool = False
    # GPU settings (no effect on CPU runs): cuDNN picks the fastest convolution algorithm
    # per shape; fp32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa
    # products, fp32 accumulation); deterministic: reproducible kernels (slower), as
    # Lightning's flag of that name, for bit-exact reruns and resumes on a GPU.
    cudnn_benchmark: bool = True
    tf32: bool = True
    deterministic: bool = False
    requeue: bool = False  # SLURM: on SIGUSR1 (--signal=USR1@90) save, then scontrol requeue

    def __post_init__(self) -> None:
        self.precision = check_precision(str(self.precision))


PRECISIONS = {"32": "32", "32-true": "32", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}
REFUSED_PRECISIONS = {
    "bf16-true": "keeps weights and optimiser state in bf16, which loses small updates",
    "16-true": "keeps weights and optimiser state in fp16, which loses small updates",
    "bf16": "is ambiguous",
    "16": "is ambiguous",
    "64": "is not supported (augmentation and losses run in float32)",
    "64-true": "is not supported (augmentation and losses run in float32)",
}


def check_precision(value: str) -> str:
    """The canonical name of a supported ``trainer.precision``; a one-line error otherwise."""
    if value in PRECISIONS:
        return PRECISIONS[value]
    why = REFUSED_PRECISIONS.get(value, "is unknown")
    raise ConfigError(
        f"trainer.precision={value!r} {why}; use '32', 'bf16-mixed' (CPU or GPU) "
        "or '16-mixed' (GPU)"
    )


@dataclass
class EvalConfig:
    """Diagnostics logged during training."""

    purity_every_n_steps: int = 50
    purity_batch_size: int = 256
    knn_at_end: bool = True
    knn_k: int = 20
    knn_t: float = 0.07


@dataclass
class RunConfig:
    """A whole run. ``name`` picks ``<output_dir>/<name>/``."""

    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"
    label: str | None = None  # groups seeds in reports; default: name
    wandb: bool = False
    resume: str | None = None  # "auto" resumes from <run>/checkpoints/last.ckpt if present
    method: MethodConfig = field(default_factory=MethodConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    hex: HexConfig = field(default_factory=HexConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/<name>``."""
        return Path(self.output_dir) / self.name


T = TypeVar("T")


# ----------------------------------------------------------------------- validation
def did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean 'x'?)' for up to two close valid names, else ''."""
    close = difflib.get_close_matches(name, valid, n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def suggest(key: str, valid: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or a list of all of them."""
    return did_you_mean(key, valid) or f"; valid keys: {', '.join(sorted(valid))}"


def check_keys(given: dict[str, Any], valid: list[str], where: str) -> None:
    """Raise ConfigError for the first unknown key, with a close-match suggestion."""
    for key in given:
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}{key}'{suggest(key, valid)}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (with int -> float widening)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' = {value!r}: expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key '{key}' = {value!r}: expected null")
    if origin in (dict, list):
        if not isinstance(value, origin):
            raise ConfigError(f"config key '{key}' = {value!r}: expected a {origin.__name__}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" as a string
            return tp(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # e.g. precision: 32
    if (tp in (int, float) and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(
            f"config key '{key}' = {value!r} ({type(value).__name__}): expected {_type_name(tp)}"
        )
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, validating keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where.rstrip('.') or '<root>'}' must be a mapping")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(data, names, where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value or {}, f"{where}{key}.")  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(value, tp, f"{where}{key}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------- value rules
# Lightning's accelerator and strategy names (its accelerator_connector); the precision
# is checked by TrainerConfig itself. tests/faults checks that Lightning accepts each.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
STRATEGIES = (
    "auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
    "ddp_find_unused_parameters_false", "fsdp", "deepspeed",
)  # fmt: skip
NAME_RULE = (
    "a run name is one folder name inside output_dir: not empty, no '/' or '\\', not '.'/'..'"
)


def _require(ok: bool, key: str, value: Any, rule: str) -> None:
    """Raise ConfigError naming ``key``, its value and the rule it breaks."""
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r}: {rule}")


def _bounds(section: Any, where: str, rules: dict[str, tuple[float, float, bool]]) -> None:
    """Check ``low <= value <= high`` (``low < value`` when the flag is set) per field."""
    for name, (low, high, strict) in rules.items():
        v = getattr(section, name)
        ok = (v > low if strict else v >= low) and v <= high
        rule = f"must be {'>' if strict else '>='} {low:g}" + (
            f" and <= {high:g}" if high != float("inf") else ""
        )
        _require(ok, f"{where}.{name}", v, rule)


def _choice(value: Any, valid: tuple[str, ...], key: str) -> None:
    close = difflib.get_close_matches(str(value), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    _require(value in valid, key, value, f"valid: {', '.join(valid)}{hint}")


def _check_devices(devices: Any) -> None:
    """An int >= 1 (or -1: all), 'auto', a list of device indices, or '0,1'-style text."""
    text = str(devices).strip()
    if isinstance(devices, list):
        ok = bool(devices) and all(isinstance(d, int) and d >= 0 for d in devices)
    elif isinstance(devices, int) and not isinstance(devices, bool):
        ok = devices >= 1 or devices == -1
    else:
        ok = text == "auto" or all(p.strip().isdigit() for p in text.split(",") if p.strip())
        ok = ok and text not in ("", ",")
    _require(ok, "trainer.devices", devices, "expected a count >= 1, -1 (all), 'auto' or ids '0,1'")


def check_name(name: str) -> None:
    """Refuse run names that would write outside ``output_dir/<name>/``."""
    bad = name.strip() in ("", ".", "..") or any(c in name for c in "/\\") or name != name.strip()
    _require(not bad, "name", name, NAME_RULE)


INF = float("inf")
# section -> field -> (low, high, low is exclusive)
_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "data": {
        "batch_size": (1, INF, False), "image_size": (1, INF, False),
        "num_workers": (0, INF, False),
    },
    "trainer": {
        "max_epochs": (1, INF, False), "num_nodes": (1, INF, False),
        "accumulate_grad_batches": (1, INF, False), "log_every_n_steps": (1, INF, False),
        "checkpoint_every_n_steps": (0, INF, False), "check_val_every_n_epoch": (1, INF, False),
        "limit_train_batches": (0, 1, True), "limit_val_batches": (0, 1, False),
    },
    "optim": {
        "lr": (0, INF, True), "classifier_lr": (0, INF, True), "weight_decay": (0, INF, False),
        "momentum": (0, 1, False), "eta": (0, INF, True), "warmup_epochs": (0, INF, False),
        "min_lr_ratio": (0, 1, False),
    },
    "hex": {"alpha": (0, 1, True), "temperature": (0, INF, True)},
    "eval": {
        "purity_every_n_steps": (0, INF, False), "purity_batch_size": (1, INF, False),
        "knn_k": (1, INF, False), "knn_t": (0, INF, True),
    },
}  # fmt: skip


def validate(cfg: RunConfig) -> RunConfig:
    """Value rules of the schema: ranges, counts > 0, Lightning's names, the run name
    (``trainer.precision`` is checked by :class:`TrainerConfig` itself).

    Names resolved through registries (method, dataset, optimiser, HEX) are checked by
    :func:`hexssl.run.build.check_names`, which needs torch.
    """
    check_name(cfg.name)
    _require(bool(cfg.output_dir.strip()), "output_dir", cfg.output_dir, "must not be empty")
    for section, rules in _RANGES.items():
        _bounds(getattr(cfg, section), section, rules)
    t = cfg.trainer
    _choice(t.accelerator, ACCELERATORS, "trainer.accelerator")
    _choice(t.strategy, STRATEGIES, "trainer.strategy")
    _check_devices(t.devices)
    betas = cfg.optim.betas
    ok = len(betas) == 2 and all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)
    _require(ok, "optim.betas", betas, "expected two numbers in [0, 1)")
    return cfg


# ------------------------------------------------------------------ loading, overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=0.3' -> (['optim', 'lr'], 0.3)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. optim.lr=0.3)")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]... = value``, creating sections as needed."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: '{part}' is not a section")
    node[path[-1]] = value


# ------------------------------------------------------------------------- presets
PRESET_DIR = Path(__file__).resolve().parent / "configs"  # shipped in the package
PRESET_KINDS = {"method": ".", "dataset": "data"}  # kind -> folder inside PRESET_DIR


def preset_names() -> dict[str, list[str]]:
    """``{"method": [...], "dataset": [...], "overlay": [...], "demo": [...]}``: every
    shipped preset.

    Files starting with ``_`` are bases that other presets extend, not presets.
    """
    top = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    data = sorted(p.stem for p in (PRESET_DIR / "data").glob("*.yaml"))
    return {
        "method": [n for n in top if n in METHOD_NAMES],
        "dataset": [n for n in data if not n.startswith("_")],
        "overlay": [n for n in top if n not in METHOD_NAMES and not n.endswith("-demo")],
        "demo": [n for n in top if n.endswith("-demo")],  # a whole run: `hexssl demo`
    }


PROTOCOL_DIR = PRESET_DIR / "studies"  # shipped study protocols (hexssl.study.protocol)


def shipped_protocols() -> dict[str, str]:
    """``{name: first line of its description}`` of the study protocols shipped in the
    package (``hexssl study --list``; read here, without importing the study machinery)."""
    out = {}
    for path in sorted(PROTOCOL_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        lines = str(raw.get("description", "")).strip().splitlines()
        out[path.stem] = lines[0] if lines else ""
    return out


def find_config(item: str | Path) -> Path:
    """A config file: the path if it exists, else the shipped preset of that name.

    ``simclr``, ``cifar10-cpu``, ``data/cifar10-cpu`` and the repository paths
    ``configs/simclr.yaml`` / ``configs/data/cifar10-cpu.yaml`` all name presets, so the
    README's commands work from any folder once hexssl is installed.
    """
    p = Path(item)
    if p.is_file():
        return p
    name = str(item).removesuffix(".yaml").removeprefix("configs/").removeprefix("data/")
    for candidate in (PRESET_DIR / f"{name}.yaml", PRESET_DIR / "data" / f"{name}.yaml"):
        if candidate.is_file() and not candidate.stem.startswith("_") and "/" not in name:
            return candidate
    every = [n for names in preset_names().values() for n in names]
    close = difflib.get_close_matches(name, every, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"config file not found: {item}, and no preset has that name; {hint}"
        "`hexssl presets` lists them (e.g. simclr cifar10-cpu)"
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for missing or malformed files."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (`hexssl presets` lists the presets)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``extra`` wins. Dicts under ``params``/``kwargs`` merge too."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


ConfigPaths = str | Path | Sequence[str | Path] | None


@dataclass
class _Layer:
    """One file's own keys and its ``by_method`` blocks, in composition order."""

    source: Path
    keys: dict[str, Any]
    by_method: dict[str, Any]


def load_config(paths: ConfigPaths, overrides: list[str] | None = None) -> RunConfig:
    """Compose YAML files left to right, apply ``key=value`` overrides, validate.

    Args:
        paths: files or preset names (:func:`find_config`), one or several (later ones
            win), or None for the schema defaults.
        overrides: dotted overrides, applied last.

    A run without a ``name`` is named after its files (stems not starting with ``_``)
    plus ``-hex`` when HEX is on, or the denominator when it is a relative of HEX:
    ``simclr.yaml data/cifar10-cpu.yaml hex.enabled=true`` gives
    ``simclr-cifar10-cpu-hex``, ``... loss.denominator=hard`` ``simclr-cifar10-cpu-hard``.

    Example:
        >>> cfg = load_config(["simclr", "cifar10-cpu"], ["hex.enabled=true"])  # presets
        >>> cfg.name, cfg.hex.enabled
        ('simclr-cifar10-cpu-hex', True)
        >>> load_config(["configs/simclr.yaml", "configs/data/cifar10-cpu.yaml"]).name  # paths
        'simclr-cifar10-cpu'
    """
    files = [
        find_config(p)
        for p in ([] if paths is None else [paths] if isinstance(paths, str | Path) else paths)
    ]
    layers = [layer for f in files for layer in _read_layers(f)]
    parsed = [parse_override(text) for text in overrides or []]
    data = _compose(layers, _method_name(layers, parsed))
    for keys, value in parsed:
        set_path(data, keys, value)
    if files and "name" not in data:
        data["name"] = _auto_name(files, data)
    return validate(from_dict(RunConfig, data))


def _compose(layers: list[_Layer], method: str) -> dict[str, Any]:
    """Merge the layers in order, each followed by its ``by_method`` block for ``method``."""
    data: dict[str, Any] = {}
    for layer in layers:
        data = merge(data, layer.keys)
        data = merge(data, _method_block(layer, method))
    return data


def compose_presets(
    paths: Sequence[str | Path], method: str | None = None, default: str | None = None
) -> dict[str, Any]:
    """The unvalidated config dict that ``paths`` (files or preset names) compose to.

    ``method`` picks the ``by_method`` blocks (None: the method the files name, else
    ``default``, else the schema's). Used where more keys are merged on top before the
    config is validated (a study's arms).

    Example:
        >>> compose_presets(["synthetic-cpu"], "moco_v2")["method"]["params"]["queue_size"]
        2048
    """
    layers = [layer for p in paths for layer in _read_layers(find_config(p))]
    if method is None:
        named = any("name" in (layer.keys.get("method") or {}) for layer in layers)
        method = _method_name(layers, []) if named or default is None else default
    return _compose(layers, method)


def _read_layers(path: Path) -> list[_Layer]:
    """The file's bases (``defaults:``, relative to it) and then the file itself."""
    data = read_yaml(path)
    bases = data.pop("defaults", None)
    by_method = data.pop("by_method", None) or {}
    if not isinstance(by_method, dict):
        raise ConfigError(f"{path}: 'by_method' must map method names to settings")
    names = [] if bases is None else bases if isinstance(bases, list) else [bases]
    inherited = [x for b in names for x in _read_layers((path.parent / str(b)).resolve())]
    return [*inherited, _Layer(path, data, by_method)]


def _method_name(layers: list[_Layer], overrides: list[tuple[list[str], Any]]) -> str:
    """The run's method from the files' own keys and the overrides (not by_method)."""
    name = MethodConfig.name
    for layer in layers:
        name = (layer.keys.get("method") or {}).get("name", name)
    for keys, value in overrides:
        if keys == ["method", "name"]:
            name = value
        elif keys == ["method"] and isinstance(value, dict):
            name = value.get("name", name)
    return str(name)


def _method_block(layer: _Layer, method: str) -> dict[str, Any]:
    """``layer.by_method[method]``, after checking every name it lists exists."""
    if not layer.by_method:
        return {}
    for name, block in layer.by_method.items():
        if name not in METHOD_NAMES:
            raise ConfigError(
                f"{layer.source}: by_method.{name}: unknown method"
                f"{suggest(name, list(METHOD_NAMES))}"
            )
        if not isinstance(block, dict) or "name" in (block.get("method") or {}):
            raise ConfigError(
                f"{layer.source}: by_method.{name} must be a mapping that leaves method.name alone"
            )
    chosen: dict[str, Any] = layer.by_method.get(method) or {}
    return chosen


def _auto_name(files: list[Path], data: dict[str, Any]) -> str:
    stems = [f.stem for f in files if not f.stem.startswith("_")]
    hex_on = (data.get("hex") or {}).get("enabled") is True
    denominator = (data.get("loss") or {}).get("denominator", LossConfig.denominator)
    relative = f"-{denominator}" if denominator != LossConfig.denominator else ""
    return "-".join(stems) + ("-hex" if hex_on else "") + relative


def dump_config(cfg: RunConfig) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def check_params(params: dict[str, Any], defaults: Any, where: str) -> Any:
    """Validate a method's ``params`` against its dataclass of defaults and build it."""
    return from_dict(type(defaults), {**dataclasses.asdict(defaults), **params}, where)
