"""Issue 34.3: damaged or mismatched weights files give one ``hexssl: error:`` line (exit 2).

Each fault is tried through ``hexssl knn`` (the reader of released weights) and
``hexssl export`` (the converter), and through ``hexssl.load_backbone``: a truncated
``.safetensors``, a header that lies about shapes (inconsistent with its own data, or
consistent but wrong for the architecture in the JSON), something that is not a
safetensors file, a missing JSON, and ``hf`` folders missing a part.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import hexssl
from hexssl.backbones import build_backbone
from hexssl.cli import main
from hexssl.config import ConfigError
from hexssl.export import export_release, write_hf

KWARGS = {"stem": "cifar", "width": 4}


def release(folder: Path) -> Path:
    torch.manual_seed(0)
    net = build_backbone("resnet18", **KWARGS).eval()
    return export_release(net, folder / "w.safetensors", "resnet18", KWARGS, 16, [0.5] * 3,
                          [0.25] * 3)  # fmt: skip


def header(path: Path) -> tuple[dict, bytes]:
    """(the JSON header, the tensor bytes) of a safetensors file."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_header(path: Path, head: dict, data: bytes) -> None:
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def truncate_in_data(w: Path) -> None:
    w.write_bytes(w.read_bytes()[:-1000])


def truncate_in_header(w: Path) -> None:
    w.write_bytes(w.read_bytes()[:2000])


def truncate_to_nothing(w: Path) -> None:
    w.write_bytes(w.read_bytes()[:5])


def shape_against_the_data(w: Path) -> None:
    head, data = header(w)
    shape = head["conv1.weight"]["shape"]
    head["conv1.weight"]["shape"] = [shape[0] * 2, *shape[1:]]  # twice the bytes it owns
    write_header(w, head, data)


def shape_against_the_architecture(w: Path) -> None:
    head, data = header(w)
    c, i, k, _ = head["conv1.weight"]["shape"]
    head["conv1.weight"]["shape"] = [c, i, k * k, 1]  # the same bytes, another shape
    write_header(w, head, data)


def a_pickle(w: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(3)}, w)  # a .pt renamed .safetensors


FAULTS: list[tuple[Callable[[Path], None], str]] = [
    (truncate_in_data, "is truncated or damaged"),
    (truncate_in_header, "is truncated or damaged"),
    (truncate_to_nothing, "is truncated or damaged"),
    (shape_against_the_data, "its header does not match its data"),
    (shape_against_the_architecture,
     "does not fit the architecture in w.json (size mismatch for conv1.weight"),
    (a_pickle, "is not a readable safetensors file"),
]  # fmt: skip


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("hexssl: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(("damage", "says"), FAULTS, ids=[f.__name__ for f, _ in FAULTS])
def test_a_damaged_safetensors_is_one_line(tmp_path, capsys, damage, says) -> None:
    w = release(tmp_path)
    damage(w)
    for command in (["knn", str(w)], ["export", str(w), "--format", "hf"]):
        assert main(command) == 2, command
        line = one_error(capsys)
        assert says in line and str(w) in line, line
    assert not (tmp_path / "w-hf").exists()  # nothing written from a bad file
    with pytest.raises(ConfigError, match=re.escape(says.split(" (")[0])):
        hexssl.load_backbone(w)


def test_a_json_that_names_another_architecture_is_one_line(tmp_path, capsys) -> None:
    w = release(tmp_path)
    meta = json.loads(w.with_suffix(".json").read_text())
    meta["backbone"]["kwargs"]["width"] = 8
    w.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["knn", str(w)]) == 2
    line = one_error(capsys)
    assert "does not fit the architecture in w.json" in line and "keep each weights file" in line


def test_weights_without_their_json_are_one_line(tmp_path, capsys) -> None:
    w = release(tmp_path)
    w.with_suffix(".json").unlink()
    assert main(["knn", str(w)]) == 2
    assert "not released weights (no w.json beside it)" in one_error(capsys)
    assert main(["export", str(w), "--format", "hf"]) == 2
    assert "no architecture file w.json beside the weights" in one_error(capsys)
    with pytest.raises(FileNotFoundError, match=r"no architecture file w\.json"):
        hexssl.load_backbone(w)


def test_the_json_instead_of_the_weights_names_them(tmp_path, capsys) -> None:
    w = release(tmp_path)
    for command in (["knn", str(w.with_suffix(".json"))], ["export", str(w.with_suffix(".json"))]):
        assert main(command) == 2
        assert f"pass the weights {w}" in one_error(capsys)


def hf_folder(tmp_path: Path) -> Path:
    w = release(tmp_path)
    from safetensors.torch import load_file

    meta = json.loads(w.with_suffix(".json").read_text())
    return write_hf(load_file(w), tmp_path / "hf", meta)


def test_an_hf_folder_without_config_json_is_one_line(tmp_path, capsys) -> None:
    folder = hf_folder(tmp_path)
    (folder / "config.json").unlink()
    for command in (["knn", str(folder)], ["export", str(folder), "--format", "safetensors"]):
        assert main(command) == 2, command
        line = one_error(capsys)
        assert f"{folder} has no config.json" in line and "--format hf" in line
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        hexssl.load_backbone(folder)


def test_an_hf_folder_without_its_weights_is_one_line(tmp_path, capsys) -> None:
    folder = hf_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    assert main(["knn", str(folder)]) == 2
    assert "no model.safetensors beside its config.json" in one_error(capsys)


def test_an_hf_folder_with_a_lying_header_is_one_line(tmp_path, capsys) -> None:
    folder = hf_folder(tmp_path)
    shape_against_the_architecture(folder / "model.safetensors")
    assert main(["knn", str(folder)]) == 2
    assert "does not fit the architecture in config.json" in one_error(capsys)


def test_export_refuses_a_name_that_is_not_safetensors(tmp_path, capsys) -> None:
    w = release(tmp_path)
    assert main(["export", str(w), "--format", "safetensors", "--out", str(tmp_path / "x.pt")]) == 2
    assert "pick a name ending in .safetensors" in one_error(capsys)
    assert not (tmp_path / "x.pt").exists()
