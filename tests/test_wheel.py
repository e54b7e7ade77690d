"""Issue 25.3: a built wheel, installed into a clean virtualenv, trains by preset name
from an empty folder (no repository, no ``configs/`` in sight).

The venv gets hexssl only from the wheel; its dependencies (torch, lightning, ...) come
from the interpreter running the tests, through a ``.pth`` file that names their
site-packages folders, so the test needs no network. The package is built from a copy
of the sources, so nothing is written into the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.data.conftest import write_tiny_zip
from tests.subproc import run_limited

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "backbone.kwargs.width=4",
    "data.batch_size=16",
    "data.image_size=16",
    "data.options={n_per_class: 8, n_super: 2, n_per_super: 2, image_size: 16}",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "eval.purity_every_n_steps=0",
]


def _ok(res: subprocess.CompletedProcess[str], what: str) -> None:
    assert res.returncode == 0, f"{what} failed:\n{res.stdout[-1500:]}\n{res.stderr[-3000:]}"


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src-copy"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    offline = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    flags = ["--no-build-isolation"] if offline else []  # else pip fetches setuptools
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", *flags, "-w", str(tmp / "dist")]
    _ok(run_limited([*cmd, str(src)], cpu_seconds=120, wall_seconds=180), "pip wheel")
    (wheel,) = (tmp / "dist").glob("hexssl-*.whl")
    return wheel


def make_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _ok(run_limited([sys.executable, "-m", "venv", "--without-pip", str(venv)]), "venv")
    python = venv / "bin" / "python"
    purelib = run_limited(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    )
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    Path(purelib.stdout.strip(), "_hexssl_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
           "--no-index", str(wheel)]  # fmt: skip
    _ok(run_limited(cmd, cpu_seconds=60, wall_seconds=120), "pip install")
    return venv


def test_the_wheel_trains_by_preset_name_from_an_empty_folder(tmp_path: Path) -> None:
    venv = make_venv(tmp_path, build_wheel(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    hexssl = str(venv / "bin" / "hexssl")
    code = (
        "import hexssl, sys; from hexssl.cli import main; print(hexssl.__file__); main(['presets'])"
    )
    listed = run_limited([str(venv / "bin" / "python"), "-c", code], cwd=empty, env=env)
    _ok(listed, "hexssl presets")
    where = Path(listed.stdout.splitlines()[0])
    assert where.is_relative_to(venv), where  # the wheel's copy, not the checkout
    assert "cifar100-cpu" in listed.stdout and "simclr" in listed.stdout
    res = run_limited([hexssl, "pretrain", "simclr", "synthetic-cpu", "hex.enabled=true", *TINY],
                      cwd=empty, env=env)  # fmt: skip
    _ok(res, "hexssl pretrain simclr synthetic-cpu")
    run = empty / "runs" / "simclr-synthetic-cpu-hex"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "summary.json").is_file()
    assert "simclr-synthetic-cpu-hex: simclr hex=on:paper epochs=1 steps=2" in res.stdout
    assert sorted(p.name for p in empty.iterdir()) == ["runs"]
    # the study's data is built from the package alone (its class list ships as package data)
    write_tiny_zip(tmp_path / "tiny-imagenet-200.zip")
    get = [hexssl, "data", "get", "tiny-imagenet-hier50", "--from", "../tiny-imagenet-200.zip"]
    got = run_limited([*get, "--out", "../data"], cwd=empty, env=env)
    _ok(got, "hexssl data get tiny-imagenet-hier50")
    assert (tmp_path / "data" / "tiny-imagenet-hier50.tar.gz").is_file()
    # a study from the wheel: shipped protocol by name, one run through the job process
    listed = run_limited([hexssl, "study", "--list"], cwd=empty, env=env)
    _ok(listed, "hexssl study --list")
    assert "hex-vs-simclr" in listed.stdout and "relatives" in listed.stdout
    study = [hexssl, "study", "hex-vs-simclr", "synthetic-cpu", "--arms", "simclr", "--seeds",
             "0", "--set", *TINY, "method.params.proj_hidden=32", "method.params.proj_out=16",
             "study.eval.linear_epochs=2", "study.eval.purity_batch_size=16",
             "study.eval.knn_k=5"]  # fmt: skip
    _ok(run_limited(study, cwd=empty, env=env, cpu_seconds=240, wall_seconds=240), "study")
    result = empty / "studies" / "hex-vs-simclr-synthetic-cpu" / "simclr-s0.json"
    assert result.is_file() and "knn_class_top1" in result.read_text()


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
