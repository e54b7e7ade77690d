"""Issue 9.9: result files are written atomically (a crash leaves the old file whole)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hexssl.cli import main
from hexssl.run import atomic
from hexssl.run.atomic import atomic_write_text, remove_stale_tmp


def fail_rename(monkeypatch):
    """Make the final rename of an atomic write fail, as a crash right before it would."""

    def boom(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(atomic.os, "replace", boom)


def test_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "knn.json"
    path.write_text("old")
    fail_rename(monkeypatch)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert remove_stale_tmp(tmp_path) == [tmp_path / "knn.json.tmp"]


def test_convert_config_out_is_atomic(tmp_path, monkeypatch, capsys):
    their = Path("tests/compat/fixtures/simclr_cifar100_hex_adaptive.yaml")
    out = tmp_path / "ours.yaml"
    out.write_text("old")
    fail_rename(monkeypatch)
    assert main(["convert-config", str(their), "--out", str(out)]) == 2
    assert out.read_text() == "old"
    assert "No space left" in capsys.readouterr().err


def test_knn_and_linear_json_are_atomic(tmp_path, monkeypatch, capsys):
    from hexssl.run.eval_jobs import _save

    (tmp_path / "knn.json").write_text("old")
    fail_rename(monkeypatch)
    with pytest.raises(OSError):
        _save(SimpleNamespace(cache_dir=tmp_path), "knn.json", {"knn_class_top1": 50.0})
    assert (tmp_path / "knn.json").read_text() == "old"
