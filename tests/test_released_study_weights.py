"""Issue 34.3: the HEX study's 18 released backbones are safetensors, and nothing names a .pt.

Each ``NAME.safetensors`` has its ``NAME.json`` (format ``hexssl-backbone/2``, naming the
file), loads as a backbone, and holds the tensors of the ``.pt`` it replaced, bit for bit
(read from git history; skipped where the checkout has no history, e.g. a shallow clone).
Every study result's ``weights`` field names a file that exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from benchmarks.check_released_weights import (
    PT_COMMIT,
    WEIGHTS,
    old_state,
    released_names,
    tensor_differences,
)
from safetensors.torch import load_file

from hexssl.export import RELEASE_FORMAT, load_release

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks" / "results" / "hex_study"


def test_the_study_weights_are_18_safetensors_with_their_json() -> None:
    names = released_names()
    assert len(names) == 18
    assert not list((ROOT / WEIGHTS).glob("*.pt"))  # no second copy in the repository
    for name in names:
        meta = json.loads((ROOT / WEIGHTS / f"{name}.json").read_text())
        assert meta["format"] == RELEASE_FORMAT and meta["weights"] == f"{name}.safetensors"
        net, loaded = load_release(ROOT / WEIGHTS / f"{name}.safetensors")
        assert loaded["arm"] == name.rsplit("-s", 1)[0] and net.num_features == 128
        state = load_file(ROOT / WEIGHTS / f"{name}.safetensors")
        floats = {v.dtype for v in state.values() if v.is_floating_point()}
        assert torch.float16 in floats and floats <= {torch.float16, torch.float32}, name


def test_every_study_result_names_its_weights_file() -> None:
    results = sorted(STUDY.glob("*-s[0-9].json"))
    assert len(results) == 18
    for path in results:
        weights = json.loads(path.read_text())["weights"]
        assert weights.endswith(".safetensors") and (STUDY / weights).is_file(), path.name


def test_the_safetensors_hold_the_tensors_of_the_pt_files_they_replaced() -> None:
    if old_state(released_names()[0]) is None:
        pytest.skip(f"the .pt files live in git history (commit {PT_COMMIT[:12]}), absent here")
    for name in released_names():
        old = old_state(name)
        assert old is not None, name
        new = load_file(ROOT / WEIGHTS / f"{name}.safetensors")
        assert tensor_differences(old, new) == [], name


def test_tensor_differences_sees_dtype_shape_value_and_name() -> None:
    a = {"w": torch.zeros(2, dtype=torch.float16), "b": torch.ones(3)}
    assert tensor_differences(a, dict(a)) == []
    assert tensor_differences(a, {**a, "w": torch.zeros(2)}) == [
        "w: torch.float16 (2,) vs torch.float32 (2,)"
    ]
    assert tensor_differences(a, {**a, "b": torch.ones(1, 3)}) == [
        "b: torch.float32 (3,) vs torch.float32 (1, 3)"
    ]
    assert tensor_differences(a, {**a, "b": torch.tensor([1.0, 1.0, 2.0])}) == ["b: values differ"]
    assert tensor_differences(a, {"w": a["w"]}) == ["only in one: b"]
