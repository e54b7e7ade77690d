"""A study's protocol: arms, seeds and the complete config of every run, fixed in advance.

A protocol file (e.g. ``benchmarks/hex_study_protocol.yaml``) names a ``base`` config,
the ``arms`` (each a partial config merged over the base), the ``seeds``, the length
(``epochs``, with warm-ups as ``warmup_fraction`` of it), the evaluation settings and the
``comparisons`` (arm, baseline) to report as paired differences. Every arm's config is
validated when the protocol loads, so a typo fails before any training.

Example:
    >>> p = load_protocol("benchmarks/hex_study_protocol.yaml")
    >>> cfg = arm_config(p, "simclr-hex-paper", seed=0, runs_dir="runs/hex_study")
    >>> cfg.hex.warmup_epochs, cfg.trainer.max_epochs  # the protocol's 40-epoch fallback
    (4.0, 40)
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hexssl.config import RunConfig, from_dict, merge, parse_override, set_path
from hexssl.errors import ConfigError
from hexssl.run.build import check_names

PROTOCOL_KEYS = {"epochs", "warmup_fraction", "seeds", "eval", "base", "arms", "comparisons"}


@dataclass
class Protocol:
    """A parsed protocol file (see ``benchmarks/hex_study_protocol.yaml``)."""

    path: Path
    epochs: int
    warmup_fraction: float
    seeds: list[int]
    eval: dict[str, Any]
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    comparisons: list[tuple[str, str]]
    label_using: list[str]
    sha256: str

    @property
    def warmup_epochs(self) -> float:
        """LR and HEX warm-up: ``warmup_fraction * epochs`` (6 of 60)."""
        return round(self.warmup_fraction * self.epochs, 6)


def load_protocol(path: str | Path, epochs: int | None = None) -> Protocol:
    """Read and validate a protocol; ``epochs`` overrides its length (smoke tests).

    Every arm's config is validated here (keys, names and combinations), so a typo
    fails before any training.
    """
    p = Path(path)
    text = p.read_text()
    raw = yaml.safe_load(text)
    missing = PROTOCOL_KEYS - set(raw or {})
    if missing:
        raise ConfigError(f"protocol {p}: missing keys {sorted(missing)}")
    comparisons = [(str(a), str(b)) for a, b in raw["comparisons"]]
    proto = Protocol(
        path=p,
        epochs=int(epochs if epochs is not None else raw["epochs"]),
        warmup_fraction=float(raw["warmup_fraction"]),
        seeds=[int(s) for s in raw["seeds"]],
        eval=dict(raw["eval"]),
        base=dict(raw["base"]),
        arms={str(k): dict(v or {}) for k, v in raw["arms"].items()},
        comparisons=comparisons,
        label_using=[str(a) for a in raw.get("label_using", [])],
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    unknown = {a for pair in comparisons for a in pair} - set(proto.arms)
    if unknown:
        raise ConfigError(f"protocol {p}: comparisons name unknown arms {sorted(unknown)}")
    for arm in proto.arms:  # names and combinations too (HEX + a relative is refused)
        check_names(arm_config(proto, arm, proto.seeds[0], "runs"))
    return proto


def run_name(arm: str, seed: int) -> str:
    """``<arm>-s<seed>``: the run directory, result JSON and weights file name."""
    return f"{arm}-s{seed}"


def arm_config(
    protocol: Protocol,
    arm: str,
    seed: int,
    runs_dir: str | Path,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The complete config of one run: base, the arm, the derived keys, then overrides."""
    if arm not in protocol.arms:
        raise ConfigError(f"unknown arm {arm!r}; the protocol has {list(protocol.arms)}")
    data = merge(copy.deepcopy(protocol.base), copy.deepcopy(protocol.arms[arm]))
    derived = {
        "name": run_name(arm, seed),
        "label": arm,
        "seed": seed,
        "output_dir": str(runs_dir),
        "trainer": {"max_epochs": protocol.epochs},
        "optim": {"warmup_epochs": protocol.warmup_epochs},
        "hex": {"warmup_epochs": protocol.warmup_epochs},
    }
    data = merge(data, derived)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
    return from_dict(RunConfig, data)


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
