"""Issue 25.3: the presets ship inside the package and are accepted by name.

``configs/`` at the repository root is a link to the package's copy (one source of
truth); the wheel test (tests/test_wheel.py) trains by preset name from an installed
package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.config import PRESET_DIR, ConfigError, load_config, preset_names

REPO = Path(__file__).resolve().parents[1]


def test_the_root_configs_folder_is_the_packaged_presets() -> None:
    assert (REPO / "configs").resolve() == PRESET_DIR  # no second copy to drift apart
    assert PRESET_DIR.is_relative_to(REPO / "src" / "hexssl")


def test_every_shipped_preset_is_packaged_data() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for pattern in ('"configs/*.yaml"', '"configs/data/*.yaml"', '"configs/README.md"'):
        assert pattern in text, pattern
    assert not list(PRESET_DIR.glob("**/*/*/*.yaml"))  # no folder the patterns miss


def test_preset_names_and_paths_give_the_same_config(monkeypatch, tmp_path) -> None:
    by_path = load_config(
        [REPO / "configs/simclr.yaml", REPO / "configs/data/cifar100-cpu.yaml"],
        ["hex.enabled=true"],
    )
    monkeypatch.chdir(tmp_path)  # an empty folder: no configs/ here
    for names in (["simclr", "cifar100-cpu"], ["simclr.yaml", "data/cifar100-cpu"],
                  ["configs/simclr.yaml", "configs/data/cifar100-cpu.yaml"]):  # fmt: skip
        assert load_config(names, ["hex.enabled=true"]) == by_path, names
    assert by_path.name == "simclr-cifar100-cpu-hex"


def test_a_local_file_wins_over_a_preset_of_the_same_name(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    Path("simclr").write_text("method: {name: byol}\n")
    assert load_config(["simclr", "synthetic-cpu"]).method.name == "byol"


def test_an_unknown_preset_suggests_and_lists(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'simclr'"):
        load_config(["simclrr", "cifar10-cpu"])
    assert main(["pretrain", "simclr", "cifar10-cpuu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hexssl: error:") and "'cifar10-cpu'" in err and "\n" not in err
    with pytest.raises(ConfigError, match="preset"):
        load_config(["_cifar-scale"])  # a base file, not a preset
    assert not list(tmp_path.iterdir())  # nothing written


def test_hexssl_presets_lists_them(capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    names = preset_names()
    assert set(names["method"]) == {"simclr", "moco_v2", "moco_v3", "nnclr", "all4one", "byol",
                                    "barlow", "vicreg"}  # fmt: skip
    assert "cifar100-cpu" in names["dataset"] and "_cifar-scale" not in names["dataset"]
    assert names["overlay"] == ["cpu"]
    for name in ("simclr", "cifar100-cpu", "tiny-imagenet-hier50-cpu", "cpu"):
        assert f" {name}" in out
    assert "hexssl pretrain simclr cifar100-cpu hex.enabled=true" in out
