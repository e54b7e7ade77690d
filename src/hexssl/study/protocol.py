"""A study's protocol: arms, seeds and the complete config of every run, fixed in advance.

A protocol file names the ``arms`` (each a partial config), the ``seeds``, the
evaluation settings (``eval``) and the ``comparisons`` (arm, baseline) to report as
paired differences. Optional keys: ``presets`` (config presets or files every arm starts
from, e.g. ``[simclr]``), ``base`` (a partial config over them), ``epochs`` (the length
of every arm; null: the presets'), ``warmup_fraction`` (LR and HEX warm-ups as a
fraction of ``epochs``), ``label_using`` (arms that see labels: upper bounds),
``description`` and ``slurm`` (where runs are placed, read by the SLURM executor).
An arm may list its own ``presets`` too (``moco_v2``: that method's preset).

One run's config is composed in this order, later ones winning:
protocol presets and the arm's presets (with the ``by_method`` blocks of the arm's
method), ``base``, the dataset presets given on the command line, the arm, the derived
keys (name, seed, length, warm-ups), then ``key=value`` overrides.

:func:`resolve_protocol` fixes all of it: each arm becomes its complete config, and the
result's :attr:`Protocol.sha256` covers everything that decides what a run trains and
how it is evaluated (not the seeds, so a study can grow, nor the placement). That
resolved protocol is what a study writes into its results folder.

Example:
    >>> p = load_protocol("benchmarks/hex_study_protocol.yaml")
    >>> cfg = arm_config(p, "simclr-hex-paper", seed=0, runs_dir="runs/hex_study")
    >>> cfg.hex.warmup_epochs, cfg.trainer.max_epochs  # the protocol's 40-epoch fallback
    (4.0, 40)
    >>> r = resolve_protocol(load_protocol("hex-vs-simclr"), ["synthetic-cpu"])
    >>> list(r.arms), r.arms["simclr-decoupled"]["loss"]["denominator"]
    (['simclr', 'simclr-hex-paper', 'simclr-decoupled'], 'decoupled')
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hexssl.config import (
    PROTOCOL_DIR,
    RunConfig,
    compose_presets,
    did_you_mean,
    from_dict,
    merge,
    parse_override,
    set_path,
    shipped_protocols,
    to_dict,
)
from hexssl.errors import ConfigError
from hexssl.run.build import check_names

REQUIRED_KEYS = ("seeds", "eval", "arms", "comparisons")
OPTIONAL_KEYS = ("epochs", "warmup_fraction", "base", "presets", "label_using", "description",
                 "slurm", "resolved", "sha256", "sources")  # fmt: skip
# what decides a run's training and evaluation: hashed. Not: seeds (a study grows),
# slurm (placement), description / sources / sha256 (records)
HASHED_KEYS = ("epochs", "warmup_fraction", "eval", "base", "presets", "arms", "comparisons",
               "label_using", "resolved")  # fmt: skip
EVAL_KEYS = ("knn_k", "knn_t", "linear_fractions", "linear_epochs", "purity_batch_size")
IDENTITY_KEYS = ("name", "label", "seed", "output_dir", "resume")  # set per run
STUDY_PREFIX = "study."  # --set study.epochs=2: a protocol key, not a run-config key


@dataclass
class Protocol:
    """A parsed protocol (see the module docstring); ``resolved``: arms are complete configs."""

    path: Path
    epochs: int | None
    warmup_fraction: float | None
    seeds: list[int]
    eval: dict[str, Any]
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    comparisons: list[tuple[str, str]]
    label_using: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    slurm: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    resolved: bool = False
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def warmup_epochs(self) -> float | None:
        """LR and HEX warm-up: ``warmup_fraction * epochs`` (6 of 60); None if either is unset."""
        if self.epochs is None or self.warmup_fraction is None:
            return None
        return round(self.warmup_fraction * self.epochs, 6)

    @property
    def sha256(self) -> str:
        """Hash of every key that decides what the runs train and how they are evaluated."""
        payload = {key: getattr(self, key) for key in HASHED_KEYS}
        text = json.dumps(payload, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def name(self) -> str:
        """The protocol's name: its file's stem (``hex-vs-simclr``)."""
        return str(self.sources.get("protocol", self.path.stem))


def find_protocol(source: str | Path) -> Path:
    """A protocol file: the path if it exists, else the shipped protocol of that name."""
    p = Path(source)
    if p.is_file():
        return p
    shipped = PROTOCOL_DIR / f"{str(source).removesuffix('.yaml')}.yaml"
    if "/" not in str(source) and shipped.is_file():
        return shipped
    names = list(shipped_protocols())
    raise ConfigError(
        f"protocol not found: {source} is neither a file nor a shipped protocol"
        f"{did_you_mean(str(source), names)}; the shipped ones: {', '.join(names)} "
        "(`hexssl study --list`)"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"protocol {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"protocol {path} must hold a mapping at the top level")
    return raw


def _check_keys(raw: dict[str, Any], where: Path) -> None:
    unknown = [k for k in raw if k not in (*REQUIRED_KEYS, *OPTIONAL_KEYS)]
    if unknown:
        valid = [*REQUIRED_KEYS, *OPTIONAL_KEYS]
        raise ConfigError(
            f"protocol {where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], valid)}; "
            f"protocol keys: {', '.join(valid)}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ConfigError(f"protocol {where}: missing keys {missing}")


def apply_study_overrides(raw: dict[str, Any], overrides: Sequence[str], where: Path) -> None:
    """Apply the ``study.KEY=VALUE`` overrides to the raw protocol mapping, in place."""
    for text in overrides:
        keys, value = parse_override(text.removeprefix(STUDY_PREFIX))
        if keys[0] not in (*REQUIRED_KEYS, *OPTIONAL_KEYS):
            _check_keys({keys[0]: None, **{k: None for k in REQUIRED_KEYS}}, where)
        set_path(raw, keys, value)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(protocol overrides ``study.KEY=VALUE``, run-config overrides)."""
    study = [o for o in overrides if o.startswith(STUDY_PREFIX)]
    return study, [o for o in overrides if not o.startswith(STUDY_PREFIX)]


def _seeds(values: Any, where: Path) -> list[int]:
    seeds = [values] if isinstance(values, int) else list(values or [])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"protocol {where}: seeds must be a list of integers, got {values!r}")
    check_seeds(seeds)
    return seeds


def check_seeds(seeds: Sequence[int]) -> None:
    """Refuse seeds that no run can use (negative, or beyond 32 bits)."""
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise ConfigError(f"seed {bad[0]} is out of range: seeds are integers in [0, 2**32)")


def load_protocol(
    source: str | Path, epochs: int | None = None, overrides: Sequence[str] = ()
) -> Protocol:
    """Read and validate a protocol file or shipped protocol name.

    ``epochs`` overrides its length (smoke tests); ``overrides`` are ``study.KEY=VALUE``
    settings of the protocol itself. Every arm's config is validated here (keys, names
    and combinations), so a typo fails before any training.
    """
    p = find_protocol(source)
    raw = _read(p)
    apply_study_overrides(raw, overrides, p)
    if epochs is not None:
        raw["epochs"] = epochs
    _check_keys(raw, p)
    proto = _parse(raw, p)
    unknown = {a for pair in proto.comparisons for a in pair} - set(proto.arms)
    unknown |= set(proto.label_using) - set(proto.arms)
    if unknown:
        raise ConfigError(f"protocol {p}: comparisons name unknown arms {sorted(unknown)}")
    if not proto.resolved:
        for arm in proto.arms:  # names and combinations too (HEX + a relative is refused)
            check_names(arm_config(proto, arm, proto.seeds[0], "runs"))
    elif raw.get("sha256") not in (None, proto.sha256):
        raise ConfigError(
            f"protocol {p} was edited after it was fixed (its sha256 no longer matches): "
            "restore it, or start a new study in another --results folder"
        )
    return proto


def _check_eval(ev: Any, p: Path) -> dict[str, Any]:
    ev = dict(ev or {})
    wrong = [k for k in ev if k not in EVAL_KEYS] + [k for k in EVAL_KEYS if k not in ev]
    if wrong:
        what = "unknown" if wrong[0] in ev else "missing"
        raise ConfigError(
            f"protocol {p}: {what} eval key {wrong[0]!r}{did_you_mean(wrong[0], list(EVAL_KEYS))}; "
            f"eval needs {', '.join(EVAL_KEYS)}"
        )
    return ev


def _parse(raw: dict[str, Any], p: Path) -> Protocol:
    arms = raw["arms"]
    if not isinstance(arms, dict) or not arms:
        raise ConfigError(f"protocol {p}: arms must map arm names to partial configs")
    presets = raw.get("presets") or []
    return Protocol(
        path=p,
        epochs=None if raw.get("epochs") is None else int(raw["epochs"]),
        warmup_fraction=(
            None if raw.get("warmup_fraction") is None else float(raw["warmup_fraction"])
        ),
        seeds=_seeds(raw["seeds"], p),
        eval=_check_eval(raw["eval"], p),
        base=dict(raw.get("base") or {}),
        arms={str(k): dict(v or {}) for k, v in arms.items()},
        comparisons=[(str(a), str(b)) for a, b in raw["comparisons"] or []],
        label_using=[str(a) for a in raw.get("label_using") or []],
        presets=[str(x) for x in ([presets] if isinstance(presets, str) else presets)],
        slurm=dict(raw.get("slurm") or {}),
        description=str(raw.get("description") or ""),
        resolved=bool(raw.get("resolved", False)),
        sources=dict(raw.get("sources") or {}),
    )


def run_name(arm: str, seed: int) -> str:
    """``<arm>-s<seed>``: the run directory, result JSON and weights file name."""
    return f"{arm}-s{seed}"


def check_arm(protocol: Protocol, arm: str) -> None:
    """Refuse an arm the protocol does not define, listing those it does."""
    if arm not in protocol.arms:
        raise ConfigError(
            f"unknown arm {arm!r}{did_you_mean(arm, list(protocol.arms))}; the protocol has "
            f"{', '.join(protocol.arms)}"
        )


def _composed(protocol: Protocol, arm: str, datasets: Sequence[str]) -> dict[str, Any]:
    """Presets, base, dataset presets and the arm, merged (no derived keys yet)."""
    own = copy.deepcopy(protocol.arms[arm])
    arm_presets = own.pop("presets", None) or []
    arm_presets = [arm_presets] if isinstance(arm_presets, str) else list(arm_presets)
    method = (own.get("method") or {}).get("name") or (protocol.base.get("method") or {}).get(
        "name"
    )
    first = [*protocol.presets, *arm_presets]
    method = method or (compose_presets(first).get("method") or {}).get("name") or "simclr"
    data = compose_presets(first, method)
    data = merge(data, copy.deepcopy(protocol.base))
    data = merge(data, compose_presets(list(datasets), method))
    return merge(data, own)


def arm_config(
    protocol: Protocol,
    arm: str,
    seed: int,
    runs_dir: str | Path,
    overrides: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> RunConfig:
    """The complete config of one run: composed as the module docstring says."""
    check_arm(protocol, arm)
    if protocol.resolved:
        data = copy.deepcopy(protocol.arms[arm])
    else:
        data = _composed(protocol, arm, datasets)
        warmup = protocol.warmup_epochs
        derived: dict[str, Any] = {"trainer": {"max_epochs": protocol.epochs}} if (
            protocol.epochs is not None
        ) else {}  # fmt: skip
        if warmup is not None:
            derived |= {"optim": {"warmup_epochs": warmup}, "hex": {"warmup_epochs": warmup}}
        data = merge(data, derived)
    identity = {"name": run_name(arm, seed), "label": arm, "seed": seed,
                "output_dir": str(runs_dir)}  # fmt: skip
    data = merge(data, identity)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
    return from_dict(RunConfig, data)


def resolve_protocol(
    protocol: Protocol, datasets: Sequence[str] = (), overrides: Sequence[str] = ()
) -> Protocol:
    """The protocol with every arm replaced by its complete config (datasets, overrides in).

    Every arm is validated (keys, registry names, combinations). The result has no
    presets and no base, so it reads the same from any installation, and its
    :attr:`~Protocol.sha256` is the study's identity.
    """
    if protocol.resolved and not datasets and not overrides:
        return protocol
    arms = {}
    for arm in protocol.arms:
        cfg = arm_config(protocol, arm, protocol.seeds[0], "runs", overrides, datasets)
        check_names(cfg)
        arms[arm] = {k: v for k, v in to_dict(cfg).items() if k not in IDENTITY_KEYS}
    lengths = {a["trainer"]["max_epochs"] for a in arms.values()}
    sources = protocol.sources or {
        "protocol": protocol.path.stem, "file": str(protocol.path), "datasets": list(datasets),
        "overrides": list(overrides),
    }  # fmt: skip
    return Protocol(
        path=protocol.path, epochs=lengths.pop() if len(lengths) == 1 else None,
        warmup_fraction=protocol.warmup_fraction, seeds=list(protocol.seeds),
        eval=copy.deepcopy(protocol.eval), base={}, arms=arms,
        comparisons=list(protocol.comparisons), label_using=list(protocol.label_using),
        presets=[], slurm=copy.deepcopy(protocol.slurm), description=protocol.description,
        resolved=True, sources=sources,
    )  # fmt: skip


def frozen_text(protocol: Protocol) -> str:
    """The YAML a study writes to ``<results>/protocol.yaml`` (a resolved protocol)."""
    if not protocol.resolved:
        raise ValueError("only a resolved protocol is written into a results folder")
    doc = {
        "description": protocol.description, "sources": protocol.sources,
        "sha256": protocol.sha256, "resolved": True, "epochs": protocol.epochs,
        "warmup_fraction": protocol.warmup_fraction, "seeds": protocol.seeds,
        "eval": protocol.eval, "comparisons": [list(c) for c in protocol.comparisons],
        "label_using": protocol.label_using, "slurm": protocol.slurm, "base": {},
        "arms": protocol.arms,
    }  # fmt: skip
    head = (
        "# The resolved protocol of this study, written by `hexssl study` before its first\n"
        "# run: every arm's complete config. Results carry its sha256; a study with another\n"
        "# protocol is refused here (start it in another --results folder).\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False)


def schedule(
    protocol: Protocol, arms: Sequence[str], seeds: Sequence[int]
) -> list[tuple[str, int]]:
    """The (arm, seed) runs in the order that completes the comparisons soonest.

    The protocol's comparisons are taken in their listed order, and each is completed
    over all seeds (seed by seed, baseline then arm) before the next one starts. So the
    first comparison has all its paired seeds after its first runs, instead of after
    every arm of the first seeds. Arms in no comparison come last.
    """
    order: list[tuple[str, int]] = []
    # comparisons are (arm, baseline): the baseline of each seed runs first
    pairs = [[b, a] for a, b in protocol.comparisons] + [[a] for a in arms]
    for pair in pairs:
        for seed in seeds:
            for arm in pair:
                if arm in arms and (arm, seed) not in order:
                    order.append((arm, seed))
    return order
