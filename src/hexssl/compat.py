"""Translate the HEX authors' solo-learn-style YAML into a hexssl config.

The authors' code (github.com/olivesgatech/HEX) is a fork of solo-learn: a file holds
solo-learn's sections (``method``, ``backbone``, ``method_kwargs``, ``data``,
``optimizer``, ``scheduler``, ``augmentations``, Lightning keys at the top level) plus HEX
keys (``type``, ``distance_thresh``, ``step_type``, ``beta``, ``tau_plus``, ...) at the top
level or inside ``method_kwargs``. :func:`convert_dict` maps every key, or reports it as
ignored with the reason, and adds a note wherever their code did something other than
what a key's name says (HEX_SPEC 4.4). The most important case: a ``type`` that their
code had no branch for did not train what its name says.

Two readings of such a file:

- the default translates its intent: ``type: 'adaptive'`` (the authors' shipped
  ``simclr_adaptive.yaml``, ``barlow_adaptive_1.yaml``, ``nnclr_adaptive.yaml``) becomes
  adaptive HEX, as the file names, run names and HEX keys say, and a warning states what
  their code actually ran;
- ``as_run=True`` (``hexssl convert-config --as-run``) reproduces what their code executed:
  the branch their ``training_step`` fell into, their objective (``hex.variant=reference``)
  and their hard-coded values, or a :class:`~hexssl.config.ConfigError` where their code
  crashed or ran something hexssl does not have.

Example:
    >>> their = {"method": "simclr", "type": "HEX_adaptive", "beta": 1,
    ...          "backbone": {"name": "resnet50"}, "data": {"dataset": "cifar100"}}
    >>> ours, notes = convert_dict(their)
    >>> ours["method"]["name"], ours["hex"]["enabled"], ours["hex"]["threshold"]
    ('simclr', True, 'adaptive')
    >>> [n for n in notes if n.startswith("type")]
    ["type -> hex.enabled=true (type 'HEX_adaptive': HEX with the adaptive threshold)"]
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hexssl.config import ConfigError, RunConfig, from_dict, read_yaml, set_path

# ------------------------------------------------------------------------ name tables
METHOD_NAMES = {  # solo-learn name -> hexssl name
    "simclr": "simclr",
    "mocov2plus": "moco_v2",
    "mocov2": "moco_v2",
    "mocov3": "moco_v3",
    "nnclr": "nnclr",
    "byol": "byol",
    "barlow_twins": "barlow",
    "vicreg": "vicreg",
    "all4one": "all4one",
}
NON_CONTRASTIVE = {"byol", "barlow", "vicreg"}  # HEX is a weighted extra term (HEX_SPEC 6)
PARAM_NAMES = {  # solo-learn method_kwargs -> hexssl method.params
    "proj_hidden_dim": "proj_hidden",
    "proj_output_dim": "proj_out",
    "pred_hidden_dim": "pred_hidden",
    "temperature": "temperature",
    "queue_size": "queue_size",
    "lamb": "lambda_offdiag",
    "scale_loss": "scale_loss",
    "sim_loss_weight": "sim_weight",
    "var_loss_weight": "var_weight",
    "cov_loss_weight": "cov_weight",
}
HEX_KEYS = (
    "type",
    "distance_thresh",
    "step_type",
    "epoch_step",
    "step_down",
    "distance_min",
    "beta",
    "tau_plus",
    "warm_epoch",
    "alpha",
    "temperature",
)
BACKBONES = ("resnet18", "resnet50", "vit_tiny", "vit_small")
CIFAR_STEM_DATASETS = ("cifar10", "cifar100")  # where solo-learn swaps in the 3x3 stem
OWN_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet", "imagenet100")
IMAGE_SIZE = {"cifar10": 32, "cifar100": 32, "stl10": 96, "imagenet": 224, "imagenet100": 224}
PRECISION = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32", "64": "64"}

# What their released training_step runs for each `type`, read from the if/elif chains in
# solo/methods/*.py of github.com/olivesgatech/HEX (commit 938f17c; "*" is the final else).
# The chains drifted apart: a `type` one method knows falls into another's else branch.
PLAIN, FIXED, ADAPTIVE, ORACLE = "plain", "fixed", "adaptive", "superclass_oracle"
CRASH = "nothing (the loss variable is never assigned, so training_step fails)"
A4O_CRASH = "nothing on the attention term (never assigned, so training_step fails)"
THEIR_BRANCHES: dict[str, dict[str, str]] = {
    "simclr": {
        "standard": PLAIN,
        "HEX_fixed": FIXED,
        "HEX_adaptive": ADAPTIVE,
        "superclass": ORACLE,
        "superclass_labels": ORACLE,
        "representation": "representation-guided HEX (not in hexssl)",
        "*": CRASH,
    },
    "barlow_twins": {
        "standard": PLAIN,
        "HEX_fixed": FIXED,
        "HEX_adaptive": ADAPTIVE,
        "superclass": ORACLE,
        "*": CRASH,
    },
    "vicreg": {
        "standard": PLAIN,
        "vicreg_simclr": "VICReg plus plain SimCLR (not in hexssl)",
        "HEX_fixed": FIXED,
        "Hex_adaptive": ADAPTIVE,
        "*": ORACLE,
    },
    "nnclr": {"standard": PLAIN, "superclass": ORACLE, "HEX_adaptive": ADAPTIVE, "*": FIXED},
    "all4one": {
        "standard": PLAIN,
        "adaptive": ADAPTIVE,
        "combined_adaptive": "NNCLR loss plus adaptive HEX (not in hexssl)",
        "superclass": f"the superclass oracle on one term and {A4O_CRASH}",
        "*": f"fixed-threshold HEX on one term and {A4O_CRASH}",
    },
}
CANONICAL_TYPES = ("standard", "HEX_fixed", "HEX_adaptive", "superclass")
HARD_CODED_HEX = ("nnclr", "all4one")  # their HEX losses fixed beta = 1, tau_plus = 0.1
BY_NAME = {  # what a `type` means by its name, whatever their code did with it
    "standard": PLAIN,
    "hex_fixed": FIXED,
    "hex_adaptive": ADAPTIVE,
    "adaptive": ADAPTIVE,  # the authors' shipped *_adaptive.yaml files (All4One's own name)
    "superclass": ORACLE,
    "superclass_labels": ORACLE,
}
MEANING = {
    PLAIN: "the plain loss (no HEX)",
    FIXED: "HEX with a fixed threshold (distance_thresh, step_type schedule)",
    ADAPTIVE: "HEX with the adaptive threshold",
    ORACLE: "the superclass oracle (CIFAR-100 coarse labels, not SSL)",
}
IGNORED_TOP = {  # top-level keys with nothing to map to, and why
    "hydra": "Hydra's own settings",
    "checkpoint": "hexssl saves <run>/checkpoints every trainer.checkpoint_every_n_steps",
    "performance": "solo-learn's channels-last switch",
    "ntasks-per-node": "a SLURM setting",
    "resume_from_checkpoint": "use `hexssl resume RUN_DIR` or resume=auto",
    "auto_umap": "use `hexssl umap RUN_DIR` after training",
    "dali": "hexssl has no DALI loader",
    "debug_augmentations": "no counterpart",
    "augmentations_cfg": "older solo-learn include; put the augmentations inline",
    "wandb_cfg": "older solo-learn include; set wandb=true",
}


# ----------------------------------------------------------------------------- output
@dataclasses.dataclass
class _Out:
    """The config being built and the notes explaining it."""

    ours: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def put(self, dst: str, value: Any) -> None:
        set_path(self.ours, dst.split("."), value)

    def mapped(self, src: str, dst: str, value: Any, why: str = "") -> None:
        self.put(dst, value)
        self.notes.append(f"{src} -> {dst}={_show(value)}" + (f" ({why})" if why else ""))

    def ignored(self, src: str, why: str) -> None:
        self.notes.append(f"{src} ignored: {why}")

    def warn(self, text: str) -> None:
        self.notes.append(f"WARNING: {text}")

    def note(self, text: str) -> None:
        self.notes.append(f"note: {text}")

    def same(self, src: str, what: str) -> None:
        """A key whose meaning hexssl has built in: nothing to set."""
        self.notes.append(f"{src} -> {what}")

    def get(self, dst: str, default: Any = None) -> Any:
        node: Any = self.ours
        for part in dst.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _show(value: Any) -> str:
    """A value as YAML flow text: true, 0.0001, [0.08, 1.0], {a: 1}."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def _num(value: Any, key: str) -> float:
    """A number from YAML; PyYAML reads ``1e-4`` (no dot) as a string, so parse those too."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"their key '{key}' = {value!r}: expected a number")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"their key '{key}' = {value!r}: expected a number") from None


def _int(value: Any, key: str) -> int:
    number = _num(value, key)
    if not number.is_integer():
        raise ConfigError(f"their key '{key}' = {value!r}: expected a whole number")
    return int(number)


# ------------------------------------------------------------------------------ public
def convert_dict(
    their: dict[str, Any], source_dir: Path | None = None, as_run: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Translate one solo-learn/HEX config (a parsed YAML mapping) into hexssl's schema.

    Args:
        their: the authors' config.
        source_dir: folder of their file, to resolve Hydra's ``augmentations: X.yaml``.
        as_run: reproduce what their released code executed for this file instead of
            what its keys say (see the module docstring).

    Returns:
        ``(ours, notes)``: a dict that :func:`hexssl.config.load_config` accepts, and one
        note per key of ``their`` (``"X -> Y=v"`` or ``"X ignored: reason"``) plus
        ``"note: ..."`` lines where their code behaved differently from its key names.
        ``"WARNING: ..."`` lines (the run did not train what the file says) come first.

    Raises:
        ConfigError: no ``method``, a method or backbone hexssl does not have, a value
            that is not a number where one is needed, or (``as_run``) a file their code
            could not run.
    """
    if not isinstance(their, dict):
        raise ConfigError("their config must be a mapping at the top level")
    out = _Out()
    method = _method(out, their)
    _top_level(out, their)
    kwargs = dict(their.get("method_kwargs") or {})
    dataset = _data(out, their.get("data") or {})
    _backbone(out, their.get("backbone") or {}, dataset)
    _hex(out, method, _hex_keys(their, kwargs), as_run)
    _method_kwargs(out, method, kwargs)
    _momentum(out, method, their.get("momentum"))
    _optimizer(out, their.get("optimizer") or {}, _device_count(their))
    _scheduler(out, their.get("scheduler") or {})
    _augmentations(out, their, dataset, source_dir)
    from_dict(RunConfig, out.ours)  # the result must load; a failure here is a bug
    loud_first = sorted(out.notes, key=lambda n: not n.startswith("WARNING"))
    return _ordered(out.ours), loud_first


def convert_file(path: str | Path, as_run: bool = False) -> tuple[str, list[str]]:
    """Read their YAML file and return ``(our YAML text, notes)``; see :func:`convert_dict`."""
    p = Path(path)
    ours, notes = convert_dict(read_yaml(p), p.parent, as_run)
    how = " --as-run" if as_run else ""
    head = [
        f"Converted by `hexssl convert-config{how}` from {p.name}; review the notes it printed."
    ]
    head += [n for n in notes if n.startswith("WARNING")]
    lines = [f"# {line}" for text in head for line in textwrap.wrap(text, 96)]
    return "\n".join(lines) + "\n" + yaml.safe_dump(ours, sort_keys=False), notes


def _ordered(ours: dict[str, Any]) -> dict[str, Any]:
    order = [f.name for f in dataclasses.fields(RunConfig)]
    return {k: ours[k] for k in sorted(ours, key=order.index)}


# ------------------------------------------------------------------------- sections
def _method(out: _Out, their: dict[str, Any]) -> str:
    name = their.get("method")
    if name not in METHOD_NAMES:
        raise ConfigError(
            f"their 'method' = {name!r} has no hexssl counterpart; known: {sorted(METHOD_NAMES)}"
        )
    out.mapped("method", "method.name", METHOD_NAMES[name])
    return str(name)


def _hex_keys(their: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """HEX keys found at the top level or in method_kwargs: {key: (source path, value)}."""
    found = {k: (k, their[k]) for k in HEX_KEYS if k in their}
    for k in HEX_KEYS:
        if k in kwargs and k != "temperature":  # method_kwargs.temperature is the method's
            found.setdefault(k, (f"method_kwargs.{k}", kwargs.pop(k)))
    return found


def _hex(out: _Out, method: str, keys: dict[str, tuple[str, Any]], as_run: bool) -> None:
    entry = keys.get("type")
    mode = _hex_type_as_run(out, method, entry) if as_run else _hex_type(out, method, entry)
    out.put("hex.enabled", mode in (FIXED, ADAPTIVE, ORACLE))
    out.put("hex.threshold", mode if mode in (FIXED, ADAPTIVE, ORACLE) else ADAPTIVE)
    _hex_numbers(out, method, keys)
    _hex_schedule(out, keys)
    _hex_warmup(out, mode, keys)
    if out.get("hex.enabled"):
        _hex_behaviour_notes(out, method, mode)
        if as_run:
            _as_run_settings(out, method, mode)


def _their_branch(method: str, value: Any) -> str:
    """What their released ``training_step`` of ``method`` ran for ``type: value``."""
    branches = THEIR_BRANCHES.get(method, {"*": PLAIN})
    return branches.get(str(value), branches["*"])


def _hex_type(out: _Out, method: str, entry: tuple[str, Any] | None) -> str:
    """Resolve their ``type`` to PLAIN / FIXED / ADAPTIVE / ORACLE, warning where it lied."""
    if entry is None:
        out.note("no 'type' key: converted as 'standard' (HEX off)")
        return PLAIN
    src, value = entry
    explicit = str(value) in THEIR_BRANCHES.get(method, {})
    ran = _their_branch(method, value)
    mode = ran if explicit and ran in MEANING else BY_NAME.get(str(value).lower(), "unknown")
    if mode == "unknown":
        _warn_unknown_type(out, method, value, ran)
        mode = PLAIN
    elif ran != mode:
        redo = "reproduces it" if ran in MEANING else "refuses it, as their code could not run"
        out.warn(
            f"their released {method} code has no branch for type {value!r} and runs "
            f"{_ran(ran)}. Converted as the name says ({MEANING[mode]}); "
            f"`convert-config --as-run` {redo}."
        )
    elif explicit and str(value) not in CANONICAL_TYPES:
        out.note(f"type {value!r} is their {method} code's own name for {MEANING[ran]}: it ran")
    out.mapped(src, "hex.enabled", mode != PLAIN, f"type {value!r}: {MEANING[mode]}")
    return mode


def _hex_type_as_run(out: _Out, method: str, entry: tuple[str, Any] | None) -> str:
    """``--as-run``: the branch their code executed for ``type``, or an error if none ran."""
    if entry is None:
        return _hex_type(out, method, entry)
    src, value = entry
    ran = _their_branch(method, value)
    if ran not in MEANING:
        raise ConfigError(
            f"--as-run: their released {method} code runs {ran} for type {value!r}, so there "
            "is no executed behaviour to reproduce. Convert without --as-run to get what the "
            "file intends"
            + (
                f" ({MEANING[BY_NAME[str(value).lower()]]})"
                if str(value).lower() in BY_NAME
                else ""
            )
        )
    out.mapped(
        src, "hex.enabled", ran != PLAIN, f"--as-run: their {method} code ran {MEANING[ran]}"
    )
    return ran


def _as_run_settings(out: _Out, method: str, mode: str) -> None:
    """Their objective and hard-coded values, so the converted run repeats theirs."""
    out.mapped("type", "hex.variant", "reference", "--as-run: their HEX objective, HEX_SPEC 4.4")
    if mode == FIXED:
        _no_floor(out)
    if method in HARD_CODED_HEX:
        for key, value in (("beta", 1.0), ("tau_plus", 0.1)):
            out.mapped("type", f"hex.{key}", value, f"--as-run: their {method} HEX loss fixed it")
    if method == "nnclr":
        out.mapped(
            "type",
            "method.params.stacked",
            True,
            "--as-run: their NNCLR HEX losses used one 2B x 2B matrix over [NN(z_0); p_1]",
        )


def _no_floor(out: _Out) -> None:
    """Their step schedule had no floor: lower hex.eps_min below the last value if needed."""
    if out.get("hex.schedule") != "step":
        return
    lowest = _lowest_step_value(out)
    if lowest < out.get("hex.eps_min", 0.3):
        out.mapped("distance_min", "hex.eps_min", lowest, "--as-run: their step had no floor")


def _ran(ran: str) -> str:
    return MEANING.get(ran, ran)


def _warn_unknown_type(out: _Out, method: str, value: Any, ran: str) -> None:
    what = (
        "their code has no HEX for this method, so it trained the plain loss"
        if method not in THEIR_BRANCHES
        else f"their released {method} code has no branch for it and runs {_ran(ran)}"
    )
    out.warn(
        f"type {value!r} is not one of 'standard', 'HEX_fixed', 'HEX_adaptive': {what}. "
        "Either way the run did NOT train adaptive HEX, whatever its name says. Converted to "
        "hex.enabled=false (plain InfoNCE / the plain method). If HEX was intended, run with "
        "hex.enabled=true hex.threshold=adaptive."
    )


def _hex_numbers(out: _Out, method: str, keys: dict[str, tuple[str, Any]]) -> None:
    for key, dst in (("distance_thresh", "eps0"), ("beta", "beta"), ("tau_plus", "tau_plus")):
        if key in keys:
            src, value = keys[key]
            out.mapped(src, f"hex.{dst}", _num(value, src))
    for key in ("alpha", "temperature"):
        if key not in keys:
            continue
        src, value = keys[key]
        if METHOD_NAMES[method] in NON_CONTRASTIVE:
            out.mapped(src, f"hex.{key}", _num(value, src), "the weighted HEX term, HEX_SPEC 6")
        else:
            out.ignored(
                src, f"unused by their {method} code (only non-contrastive methods read it)"
            )


def _hex_schedule(out: _Out, keys: dict[str, tuple[str, Any]]) -> None:
    """step_type / epoch_step / step_down / distance_min -> the fixed schedule (HEX_SPEC 5.2)."""
    if "step_type" in keys:
        src, value = keys["step_type"]
        schedule = {"step": "step", "cosine": "cosine"}.get(str(value), "constant")
        out.mapped(src, "hex.schedule", schedule, "used with hex.threshold=fixed")
        if schedule == "cosine":
            out.note(
                "their cosine step_type re-applied the cosine to the already lowered threshold "
                "every epoch, so it fell much faster than a cosine; hexssl's is the closed "
                "form eps_min + (eps0 - eps_min) (1 + cos(pi t)) / 2"
            )
    for key, dst in (("epoch_step", "epoch_step"), ("step_down", "step_down")):
        if key in keys:
            src, value = keys[key]
            out.mapped(src, f"hex.{dst}", _num(value, src))
    if "distance_min" in keys:
        src, value = keys["distance_min"]
        out.mapped(src, "hex.eps_min", _num(value, src))
        _floor_note(out)


def _floor_note(out: _Out) -> None:
    """Their step schedule had no floor; say whether ours binds within the run."""
    if out.get("hex.schedule") != "step":
        return
    lowest = _lowest_step_value(out)
    epochs = out.get("trainer.max_epochs", 100)
    binds = lowest < out.get("hex.eps_min") - 1e-9
    out.note(
        f"their step schedule used no floor (distance_min only fed the cosine one); over "
        f"{epochs} epochs it reaches {lowest:.3g}, so hex.eps_min "
        + ("DOES bind: lower it to reproduce their schedule" if binds else "never binds")
    )


def _lowest_step_value(out: _Out) -> float:
    """The last value of their step schedule over the run (no floor)."""
    eps0, step = out.get("hex.eps0", 0.9), out.get("hex.step_down", 0.1)
    every, epochs = out.get("hex.epoch_step", 100.0), out.get("trainer.max_epochs", 100)
    return float(eps0 - step * math.floor((epochs - 1) / every))


def _hex_warmup(out: _Out, mode: str, keys: dict[str, tuple[str, Any]]) -> None:
    if mode in (FIXED, ORACLE):
        out.put("hex.warmup_epochs", 0.0)
        why = f"their {mode} branches had no warm-up, so hex.warmup_epochs=0"
        if "warm_epoch" in keys:
            out.ignored(keys["warm_epoch"][0], why)
        else:
            out.note(why)
        return
    if "warm_epoch" in keys:
        src, value = keys["warm_epoch"]
        warm = _num(value, src) + 1
        out.mapped(
            src,
            "hex.warmup_epochs",
            warm,
            f"their test was current_epoch <= {_show(value)}, i.e. {_show(warm)} plain epochs",
        )
    elif out.get("hex.enabled"):
        out.note("no warm_epoch: hex.warmup_epochs keeps hexssl's default 10 (HEX_SPEC 5.3)")


def _hex_behaviour_notes(out: _Out, method: str, mode: str) -> None:
    """Where their HEX code computed something other than what its names say (HEX_SPEC 4.4)."""
    out.note(
        "their HEX loss removed the positive and the neighbours from the denominator "
        "(InfoNCE over the global set only, HEX_SPEC 4.4). hexssl defaults to "
        "hex.variant=paper (the published equations); run with hex.variant=reference to "
        "reproduce their objective"
    )
    if mode == FIXED:
        out.note(
            "their fixed threshold compared min-max normalised similarities "
            "((s - min) / (max - min) per row, self included), so distance_thresh is not a "
            "cosine similarity; hex.variant=reference does the same, with variant=paper "
            "hex.eps0 is a cosine threshold"
        )
    if mode == ADAPTIVE:
        out.note(
            "their adaptive threshold took the 0.99 quantile over the full row, self and "
            "positive included (so it depends on the batch size); hexssl excludes them "
            "(HEX_SPEC 5.1) except with hex.variant=reference"
        )
    if mode == ORACLE:
        out.note(
            "the superclass oracle uses ground-truth labels: an upper bound for analysis, never "
            "an SSL result (HEX_SPEC 6). Theirs mapped labels through CIFAR-100's coarse table "
            "whatever the dataset; hexssl uses the dataset's own superclasses"
        )
    extra = (
        "; here also beta=1 and tau_plus=0.1, whatever the file said"
        if method in ("nnclr", "all4one")
        else ""
    )
    out.note(
        "their HEX losses hard-coded the device 'cuda:0' (and, in NNCLR and All4One, the batch "
        f"size 256{extra}): one GPU and one batch size only. hexssl takes device and sizes "
        "from the tensors, so multi-GPU runs and other batch sizes work"
    )


def _method_kwargs(out: _Out, method: str, kwargs: dict[str, Any]) -> None:
    ours = METHOD_NAMES[method]
    fields = _param_fields(ours)
    for key, value in kwargs.items():
        src = f"method_kwargs.{key}"
        if key == "temperature" and ours in NON_CONTRASTIVE:
            out.mapped(src, "hex.temperature", _num(value, src), f"{ours} has no temperature")
            continue
        dst = PARAM_NAMES.get(key)
        if dst is None:
            out.ignored(src, "no hexssl counterpart")
        elif fields is not None and dst not in fields:
            out.ignored(src, f"hexssl's {ours} has no parameter {dst!r}")
        else:
            out.mapped(
                src, f"method.params.{dst}", value if isinstance(value, int) else _num(value, src)
            )


def _param_fields(method: str) -> set[str] | None:
    """Field names of the method's Params, or None when it is not registered (yet)."""
    from hexssl.methods import METHODS  # lazy: torch and lightning are slow to import

    cls = METHODS.get(method)
    return None if cls is None else {f.name for f in dataclasses.fields(cls.Params)}


def _momentum(out: _Out, method: str, momentum: Any) -> None:
    if not isinstance(momentum, dict):
        return
    fields = _param_fields(METHOD_NAMES[method])
    for key, value in momentum.items():
        src = f"momentum.{key}"
        if key == "base_tau" and (fields is None or "momentum_base" in fields):
            out.mapped(src, "method.params.momentum_base", _num(value, src))
        elif key == "final_tau" and _num(value, src) == 1.0:
            out.same(src, "1.0, hexssl's fixed end value of the cosine momentum schedule")
        elif key in ("base_tau", "final_tau"):
            out.ignored(
                src, f"hexssl's {METHOD_NAMES[method]} has no momentum or no such end value"
            )
        else:
            out.ignored(src, "no hexssl counterpart")


def _backbone(out: _Out, backbone: dict[str, Any], dataset: str) -> None:
    name = backbone.get("name")
    if name not in BACKBONES:
        raise ConfigError(f"their backbone {name!r} has no hexssl counterpart; known: {BACKBONES}")
    out.mapped("backbone.name", "backbone.name", name)
    if str(name).startswith("resnet"):
        stem = "cifar" if dataset in CIFAR_STEM_DATASETS else "imagenet"
        out.put("backbone.kwargs", {"stem": stem})
        out.note(
            f"backbone.kwargs.stem={stem}: solo-learn switches to the 3x3 stem (no max-pool) "
            "for CIFAR only; theirs used padding 2 (34x34 maps), ours padding 1"
        )
    else:
        out.put("backbone.kwargs", {"img_size": IMAGE_SIZE.get(dataset, 224)})
    for key, value in (backbone.get("kwargs") or {}).items():
        if key in ("zero_init_residual", "patch_size", "img_size"):
            out.mapped(f"backbone.kwargs.{key}", f"backbone.kwargs.{key}", value)
        else:
            out.ignored(f"backbone.kwargs.{key}", "not an option of hexssl's backbones")


def _data(out: _Out, data: dict[str, Any]) -> str:
    if "dataset" not in data:
        raise ConfigError("their config has no data.dataset")
    dataset = str(data["dataset"])
    ours = dataset if dataset in OWN_DATASETS else "imagefolder"
    out.mapped(
        "data.dataset",
        "data.dataset",
        ours,
        "" if ours == dataset else "a <root>/{train,val}/<class>/ tree",
    )
    for key, value in data.items():
        handler = _DATA_KEYS.get(key)
        if handler is None:
            out.ignored(f"data.{key}", "no hexssl counterpart")
        elif key != "dataset":
            handler(out, ours, value)
    return dataset


def _data_root(out: _Out, dataset: str, value: Any) -> None:
    path = str(value or "")
    if not path:
        out.put("data.root", None)
        out.ignored("data.train_path", "empty in their file: set data.root=<your data>")
        return
    p = Path(path)
    lazy_or_folder = dataset in ("imagenet", "imagenet100", "imagefolder")
    root = str(p.parent) if lazy_or_folder and p.name == "train" else path
    why = "the folder holding train/ and val/" if root != path else ""
    out.mapped("data.train_path", "data.root", root, why)


_DATA_KEYS: dict[str, Callable[[_Out, str, Any], None]] = {
    "dataset": lambda out, ds, v: None,
    "train_path": _data_root,
    "val_path": lambda out, ds, v: out.ignored(
        "data.val_path", "hexssl reads the val/test split from data.root"
    ),
    "format": lambda out, ds, v: out.ignored(
        "data.format", "hexssl picks its reader from data.dataset"
    ),
    "num_workers": lambda out, ds, v: out.mapped(
        "data.num_workers",
        "data.num_workers",
        int(v),
        "used by lazy datasets (ImageNet) only; in-memory ones need none",
    ),
    "fraction": lambda out, ds, v: out.ignored(
        "data.fraction", "use data.options.max_train_samples=N for a subset"
    ),
    "no_labels": lambda out, ds, v: out.ignored(
        "data.no_labels", "use data.dataset=unlabeled for a folder without classes"
    ),
    "num_classes": lambda out, ds, v: out.ignored("data.num_classes", "read from the data"),
    "num_large_crops": lambda out, ds, v: out.ignored(
        "data.num_large_crops", "derived from augmentations"
    ),
    "num_small_crops": lambda out, ds, v: out.ignored(
        "data.num_small_crops", "derived from augmentations"
    ),
}


def _device_count(their: dict[str, Any]) -> int:
    devices = their.get("devices", 1)
    count = len(devices) if isinstance(devices, list) else int(devices or 1)
    return count * int(their.get("num_nodes", 1) or 1)


def _optimizer(out: _Out, opt: dict[str, Any], devices: int) -> None:
    opt = dict(opt)
    kwargs = dict(opt.pop("kwargs", None) or {})
    name = str(opt.pop("name", "lars"))
    if name not in ("lars", "sgd", "adam", "adamw"):
        raise ConfigError(f"their optimizer {name!r} has no hexssl counterpart (lars, sgd, adamw)")
    out.mapped("optimizer.name", "optim.name", {"adam": "adamw"}.get(name, name))
    batch = _int(opt.pop("batch_size", 256), "optimizer.batch_size")
    out.mapped("optimizer.batch_size", "data.batch_size", batch, "per process, as in solo-learn")
    if "lr" in opt:
        out.mapped(
            "optimizer.lr",
            "optim.lr",
            _num(opt.pop("lr"), "optimizer.lr"),
            "both scale it by batch x devices / 256",
        )
    if "classifier_lr" in opt:
        factor = batch * devices / 256
        lr = _num(opt.pop("classifier_lr"), "optimizer.classifier_lr") * factor
        out.mapped(
            "optimizer.classifier_lr",
            "optim.classifier_lr",
            lr,
            "solo-learn scaled it by batch x devices / 256, hexssl does not",
        )
    if "weight_decay" in opt:
        wd = _num(opt.pop("weight_decay"), "optimizer.weight_decay")
        out.mapped("optimizer.weight_decay", "optim.weight_decay", wd)
    _optimizer_kwargs(out, name, kwargs, bool(opt.pop("exclude_bias_n_norm_wd", False)))
    for key in opt:
        out.ignored(f"optimizer.{key}", "no hexssl counterpart")


def _optimizer_kwargs(out: _Out, name: str, kwargs: dict[str, Any], wd_excluded: bool) -> None:
    if name == "lars" and "eta" not in kwargs:
        out.put("optim.eta", 1e-3)
        out.note("no optimizer.kwargs.eta: solo-learn's LARS default 1e-3 -> optim.eta=0.001")
    if name == "lars" and "exclude_bias_n_norm" not in kwargs:
        out.put("optim.exclude_bias_norm", wd_excluded)
    for key, value in kwargs.items():
        src = f"optimizer.kwargs.{key}"
        if key in ("eta", "momentum"):
            out.mapped(src, f"optim.{key}", _num(value, src))
        elif key == "exclude_bias_n_norm":
            out.mapped(
                src,
                "optim.exclude_bias_norm",
                bool(value),
                "hexssl also drops their weight decay, which solo-learn did only with "
                "optimizer.exclude_bias_n_norm_wd",
            )
        elif key == "betas":
            out.mapped(src, "optim.betas", [_num(b, src) for b in value])
        elif key == "clip_lr":
            out.ignored(src, "hexssl's LARS does not clip the adaptive LR at the base LR")
        else:
            out.ignored(src, "not an option of hexssl's optimisers")
    if wd_excluded:
        out.mapped("optimizer.exclude_bias_n_norm_wd", "optim.exclude_bias_norm", True)


def _scheduler(out: _Out, sched: dict[str, Any]) -> None:
    for key, value in sched.items():
        src = f"scheduler.{key}"
        if key == "name" and value == "warmup_cosine":
            out.same(src, "linear warm-up then cosine, hexssl's only schedule")
        elif key == "name":
            out.ignored(src, f"{value!r}: hexssl has only warm-up + cosine")
        elif key == "warmup_epochs":
            out.mapped(src, "optim.warmup_epochs", _num(value, src))
        elif key == "min_lr":
            ratio = _num(value, src) / out.get("optim.lr", 0.3)
            out.mapped(src, "optim.min_lr_ratio", ratio, "as a fraction of optim.lr")
        elif key == "interval" and value == "step":
            out.same(src, "per step, as hexssl always does")
        elif key == "warmup_start_lr":
            out.ignored(src, "hexssl's warm-up starts from lr / warm-up steps")
        else:
            out.ignored(src, "no hexssl counterpart")


# ---------------------------------------------------------------------- augmentations
AUG_FIELDS: dict[tuple[str, ...], str] = {  # (their path) -> ViewConfig field
    ("color_jitter", "prob"): "jitter_p",
    ("color_jitter", "brightness"): "brightness",
    ("color_jitter", "contrast"): "contrast",
    ("color_jitter", "saturation"): "saturation",
    ("color_jitter", "hue"): "hue",
    ("grayscale", "prob"): "gray_p",
    ("gaussian_blur", "prob"): "blur_p",
    ("solarization", "prob"): "solar_p",
    ("horizontal_flip", "prob"): "flip_p",
    ("gaussian_prob",): "blur_p",  # older solo-learn spellings
    ("solarization_prob",): "solar_p",
    ("horizontal_flip_prob",): "flip_p",
}
OFF_WHEN_DISABLED = {
    "color_jitter": "jitter_p",
    "grayscale": "gray_p",
    "gaussian_blur": "blur_p",
    "solarization": "solar_p",
    "horizontal_flip": "flip_p",
}


def _augmentations(out: _Out, their: dict[str, Any], dataset: str, source_dir: Path | None) -> None:
    pipelines, src = their.get("augmentations"), "augmentations"
    if pipelines is None:
        pipelines, src = _hydra_augmentations(out, their.get("defaults"), source_dir)
    elif "defaults" in their:
        out.ignored("defaults", "Hydra composition list; augmentations are given inline")
    size = IMAGE_SIZE.get(dataset, 32)
    if not pipelines:
        out.put("data.image_size", size)
        out.note(
            f"no augmentations: data.image_size={size} for {dataset!r}, and the method's "
            "default augmentation preset"
        )
        return
    views = [p for p in pipelines for _ in range(_int(p.get("num_crops", 1), "num_crops"))]
    size = _int(views[0].get("crop_size", size), "crop_size")
    out.put("data.image_size", size)
    if dataset in ("imagenet", "imagenet100"):
        out.put("data.options.image_size", size)
    if len(views) != 2 or len({v.get("crop_size") for v in views}) > 1:
        out.ignored(
            src,
            f"{len(views)} views (multi-crop) are not converted: data.image_size="
            f"{size}; use data.augment=multicrop",
        )
        return
    per_view = [
        _view_fields(out, p, f"{src}[{i}]")
        for i, p in enumerate(pipelines)
        for _ in range(_int(p.get("num_crops", 1), "num_crops"))
    ]
    overrides = _collapse(per_view)
    preset = "simclr" if all(v == per_view[0] for v in per_view) else "byol"  # (a)symmetric
    out.put("data.augment", preset)
    out.put("data.aug_overrides", overrides)
    out.notes.append(
        f"{src} -> data.augment={preset}, data.image_size={size}, "
        f"data.aug_overrides={_show(overrides)}"
    )


def _hydra_augmentations(
    out: _Out, defaults: Any, source_dir: Path | None
) -> tuple[list[dict[str, Any]] | None, str]:
    """Follow ``defaults: [augmentations: X.yaml]`` to ``<dir>/augmentations/X.yaml``."""
    if defaults is None:
        return None, "augmentations"
    names = [d["augmentations"] for d in defaults if isinstance(d, dict) and "augmentations" in d]
    path = source_dir / "augmentations" / str(names[0]) if names and source_dir else None
    if path is None or not path.is_file():
        why = (
            f"augmentations: {names[0]} not found next to the file" if names else "no augmentations"
        )
        out.ignored(
            "defaults",
            f"Hydra composition list ({why}; the method's default augmentation preset is used)",
        )
        return None, "augmentations"
    out.notes.append(f"defaults -> read augmentations/{names[0]} (other Hydra entries ignored)")
    loaded = yaml.safe_load(path.read_text())
    return (loaded if isinstance(loaded, list) else None), f"defaults.augmentations ({names[0]})"


def _view_fields(out: _Out, pipeline: dict[str, Any], where: str) -> dict[str, Any]:
    """One solo-learn pipeline -> ViewConfig fields; unknown or unsupported parts noted."""
    fields: dict[str, Any] = {}  # ViewConfig field -> value
    for path, name in AUG_FIELDS.items():
        node: Any = pipeline
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            fields[name] = _num(node, f"{where}.{'.'.join(path)}")
    for group, name in OFF_WHEN_DISABLED.items():
        if isinstance(pipeline.get(group), dict) and pipeline[group].get("enabled") is False:
            fields[name] = 0.0
    rrc = pipeline.get("rrc") or {}
    if "crop_min_scale" in rrc or "crop_max_scale" in rrc:
        fields["crop_scale"] = [
            _num(rrc.get("crop_min_scale", 0.08), where),
            _num(rrc.get("crop_max_scale", 1.0), where),
        ]
    if rrc.get("enabled") is False:
        out.ignored(f"{where}.rrc.enabled", "hexssl always takes a random resized crop")
    eq = pipeline.get("equalization") or {}
    if eq.get("enabled", True) and _num(eq.get("prob", 0.0), where) > 0:
        out.ignored(f"{where}.equalization", "hexssl has no histogram equalisation")
    return fields


def _collapse(views: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-view dicts -> one value where all views agree, else a per-view list."""
    common = set.intersection(*(set(v) for v in views))  # a field missing in one view: default
    return {k: _same_or_list([v[k] for v in views]) for k in sorted(common)}


def _same_or_list(values: list[Any]) -> Any:
    return values[0] if all(v == values[0] for v in values) else values


# --------------------------------------------------------------------------- top level
def _top_level(out: _Out, their: dict[str, Any]) -> None:
    sections = {
        "method",
        "method_kwargs",
        "backbone",
        "data",
        "optimizer",
        "scheduler",
        "momentum",
        "augmentations",
        "defaults",
        *HEX_KEYS,
    }
    for key, value in their.items():
        handler = _TOP_KEYS.get(key)
        if handler is not None:
            handler(out, value)
        elif key in IGNORED_TOP:
            out.ignored(key, IGNORED_TOP[key])
        elif key not in sections:
            out.ignored(key, "not a solo-learn or HEX key this converter knows")
    if "seed" not in their:
        out.put("seed", 5)
        out.note("no seed: solo-learn's default 5 -> seed=5")


def _devices(out: _Out, value: Any) -> None:
    if isinstance(value, list):
        out.mapped("devices", "trainer.devices", len(value), f"a count; their list was {value}")
    else:
        out.mapped("devices", "trainer.devices", value)


def _auto_resume(out: _Out, value: Any) -> None:
    on = isinstance(value, dict) and bool(value.get("enabled"))
    if on:
        out.mapped("auto_resume", "resume", "auto", "resume from <run>/checkpoints/last.ckpt")
    else:
        out.ignored("auto_resume", "disabled")


def _knn_eval(out: _Out, value: Any) -> None:
    value = value if isinstance(value, dict) else {}
    out.mapped(
        "knn_eval",
        "eval.knn_at_end",
        bool(value.get("enabled", False)),
        "hexssl runs kNN once, after training",
    )
    if "k" in value:
        out.mapped("knn_eval.k", "eval.knn_k", int(value["k"]))


_TOP_KEYS: dict[str, Callable[[_Out, Any], None]] = {
    "name": lambda out, v: out.mapped("name", "name", str(v)),
    "seed": lambda out, v: out.mapped("seed", "seed", int(v)),
    "max_epochs": lambda out, v: out.mapped("max_epochs", "trainer.max_epochs", int(v)),
    "devices": _devices,
    "num_nodes": lambda out, v: out.mapped("num_nodes", "trainer.num_nodes", int(v)),
    "accelerator": lambda out, v: out.mapped("accelerator", "trainer.accelerator", str(v)),
    "strategy": lambda out, v: out.mapped("strategy", "trainer.strategy", str(v or "auto")),
    "precision": lambda out, v: out.mapped(
        "precision", "trainer.precision", PRECISION.get(str(v), str(v))
    ),
    "sync_batchnorm": lambda out, v: out.mapped(
        "sync_batchnorm", "trainer.sync_batchnorm", bool(v), "takes effect under DDP only"
    ),
    "accumulate_grad_batches": lambda out, v: out.mapped(
        "accumulate_grad_batches", "trainer.accumulate_grad_batches", int(v or 1)
    ),
    "auto_resume": _auto_resume,
    "wandb": lambda out, v: out.mapped(
        "wandb",
        "wandb",
        bool(isinstance(v, dict) and v.get("enabled")),
        "entity/project are set through wandb's own environment variables",
    ),
    "knn_eval": _knn_eval,
}
