"""Issue 9.4, 9.6, 9.7, 9.9: every bad input is one ``hexssl: error:`` line, exit 2, and
nothing written (no run directory)."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import get_args

import pytest
from lightning.fabric.plugins.precision.precision import (
    _PRECISION_INPUT_STR,
    _PRECISION_INPUT_STR_ALIAS,
)
from lightning.pytorch.strategies import StrategyRegistry

from hexssl.cli import main
from hexssl.config import PRECISIONS, STRATEGIES, ConfigError, load_config

from .helpers import TINY

PRESET = "src/hexssl/configs/simclr-synthetic-demo.yaml"

CONFIG_ERRORS = {  # override -> words the message must contain
    "data.batch_size=0": "data.batch_size",
    "data.batch_size=-4": "data.batch_size",
    "optim.name=adamm": "adamw",
    "trainer.precision=17": "16-mixed",
    "trainer.strategy=dpp": "ddp",
    "trainer.devices=abc": "trainer.devices",
    "trainer.max_epochs=-2": "trainer.max_epochs",
    "optim.lr=-1": "optim.lr",
    "data.dataset=cifar11": "cifar10",
    "trainer.checkpoint_every_n_steps=-1": "checkpoint_every_n_steps",
    "hex.q=1.5": "q",  # validated although HEX is off
    "hex.schedule=cosin": "cosine",  # a fixed-threshold key, checked with threshold=adaptive
    "trainer.limit_train_batches=0": "limit_train_batches",
    "data.options={n_per_klass: 3}": "n_per_klass",
}
NAMES = ["../escaped", "/tmp/absolute-run", "''", "a/b", ".", "..", "' x'"]


def pretrain_cli(tmp: Path, *overrides: str) -> int:
    return main(["pretrain", PRESET, *TINY, f"output_dir={tmp / 'out'}", "name=r", *overrides])


def assert_one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("hexssl: error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize("override", sorted(CONFIG_ERRORS))
def test_bad_value_is_one_line_and_writes_nothing(tmp_path, capsys, override):
    code = pretrain_cli(tmp_path, override)
    assert_one_line_error(capsys, code, CONFIG_ERRORS[override])
    assert not (tmp_path / "out").exists()


def test_print_config_validates_too(capsys):
    assert main(["pretrain", PRESET, "hex.q=1.5", "--print-config"]) == 2
    assert "q" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_run_name_cannot_escape_output_dir(tmp_path, capsys, name):
    code = main(["pretrain", PRESET, *TINY, f"output_dir={tmp_path / 'out'}", f"name={name}"])
    assert_one_line_error(capsys, code, "name", "one folder name")
    assert list(tmp_path.iterdir()) == []  # nothing beside or inside output_dir


def test_batch_larger_than_split_trains_nothing(tmp_path, capsys):
    assert_one_line_error(
        capsys, pretrain_cli(tmp_path, "data.batch_size=100000"), "train on nothing", "larger"
    )
    assert not (tmp_path / "out").exists()


def test_tiny_limit_trains_nothing(tmp_path, capsys):
    code = pretrain_cli(tmp_path, "trainer.limit_train_batches=0.01")
    assert_one_line_error(capsys, code, "train on nothing", "limit_train_batches")


def test_gpu_accelerator_without_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_one_line_error(capsys, pretrain_cli(tmp_path, "trainer.accelerator=gpu"), "trainer")
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["pretrain", PRESET, *TINY, f"output_dir={tmp_path / 'file'}", "name=r"])
    assert_one_line_error(capsys, code, "is a file")
    assert (tmp_path / "file").read_text() == "x"


def read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot write in: mode 555, or (as root) a read-only mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for folder in (ro, Path("/sys")):
        try:
            tempfile.TemporaryDirectory(dir=folder).cleanup()
        except OSError:
            return folder
    pytest.skip("no read-only folder on this machine (root, and no read-only mount)")


def test_read_only_output_dir(tmp_path, capsys):
    ro = read_only_dir(tmp_path)
    code = main(["pretrain", PRESET, *TINY, f"output_dir={ro}", "name=r"])
    assert_one_line_error(capsys, code, "cannot write")
    assert not (ro / "r").exists()


def test_lightning_accepts_every_listed_name():
    lightning = {*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)}
    assert set(PRECISIONS) <= lightning
    registered = set(StrategyRegistry.available_strategies())
    assert all(s == "auto" or s in registered for s in STRATEGIES)


@pytest.mark.parametrize("devices", [1, -1, "auto", "0,1", [0, 1]])
def test_valid_devices_pass(devices):
    value = devices if not isinstance(devices, list) else "[0, 1]"
    assert load_config(None, [f"trainer.devices={value}"]).trainer.devices is not None


def test_config_error_names_rule():
    with pytest.raises(ConfigError, match=r"'data.batch_size' = 0: must be >= 1"):
        load_config(None, ["data.batch_size=0"])


# ------------------------------------------------------------------- data on disk
def write_tree(root: Path, hierarchy: bytes | None = None, image: bytes | None = None) -> Path:
    """A 2-class imagefolder tree with tiny PNGs (or the given bytes as every image)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    data = image if image is not None else buf.getvalue()
    for split in ("train", "val"):
        for klass in ("cat", "dog"):
            (root / split / klass).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                (root / split / klass / f"{i}.png").write_bytes(data)
    if hierarchy is not None:
        (root / "hierarchy.csv").write_bytes(hierarchy)
    return root


def data_cli(tmp: Path, root: Path, *extra: str) -> int:
    return pretrain_cli(
        tmp, "data.dataset=imagefolder", f"data.root={root}", "data.options={}", *extra
    )


@pytest.mark.parametrize(
    ("hierarchy", "words"),
    [
        (b"cat,animal\ndog\n", ["hierarchy.csv line 2"]),
        (b"cat,anim\xe9l\ndog,animal\n", ["not UTF-8", "0xe9"]),
    ],
)
def test_bad_hierarchy_csv(tmp_path, capsys, monkeypatch, hierarchy, words):
    monkeypatch.setenv("HEXSSL_CACHE", str(tmp_path / "cache"))
    root = write_tree(tmp_path / "tree", hierarchy)
    assert_one_line_error(capsys, data_cli(tmp_path, root), *words)
    assert not (tmp_path / "out").exists()


def test_every_image_unreadable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HEXSSL_CACHE", str(tmp_path / "cache"))
    root = write_tree(tmp_path / "tree", image=b"not an image")
    assert_one_line_error(capsys, data_cli(tmp_path, root), "no readable images")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["truncated", "fake"])
def test_broken_archive(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setenv("HEXSSL_CACHE", str(tmp_path / "cache"))
    tree = write_tree(tmp_path / "tree")
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree, arcname="tree")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"no tar here" * 50)
    assert_one_line_error(capsys, data_cli(tmp_path, archive), str(archive), "archive")
    assert not (tmp_path / "out").exists()


def test_report_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "rep")])
    assert_one_line_error(capsys, code, "not a run directory", "summary.json")
    assert not (tmp_path / "rep").exists()


def test_output_piped_into_a_reader_that_stops_early_is_not_an_error() -> None:
    """`hexssl study --list | head -1`: a closed pipe ends the command quietly, exit 0."""
    import subprocess
    import sys

    code = "import sys; from hexssl.cli import main; sys.exit(main(['study', '--list']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "error" not in err and "Traceback" not in err, err
