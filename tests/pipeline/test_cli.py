"""The CLI end to end on a tiny synthetic run: pretrain -> files -> export -> reload -> eval."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from hexssl.backbones import build_backbone
from hexssl.cli import main

from .tiny import tiny


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    args = tiny(tmp, "r", "hex.enabled=true")
    assert main(["pretrain", "src/hexssl/configs/simclr-synthetic-demo.yaml", *args]) == 0
    return tmp / "r"


def test_run_directory_contents(run_dir):
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hex"] is True and summary["steps"] == 2
    assert 0.0 <= summary["knn_class_top1"] <= 100.0
    assert 0.0 <= summary["val/purity_class"] <= 1.0  # the demo table's purity column
    assert 0.0 < summary["val/purity_class_chance"] < 1.0
    with open(run_dir / "metrics.csv") as f:
        cols = next(csv.reader(f))
    for key in (
        "train/loss",
        "train/hex/eps",
        "train/hex/neighbour_frac",
        "val/online_acc1",
        "val/purity_class",
        "val/purity_super",
    ):
        assert key in cols, key


def test_export_and_reload(run_dir, tmp_path):
    out = tmp_path / "bb.pt"
    assert main(["export", str(run_dir), "--format", "state_dict", "--out", str(out)]) == 0
    state = torch.load(out)
    fresh = build_backbone("resnet18", stem="cifar", width=4)
    fresh.load_state_dict(state)  # strict: every key matches
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    torch.testing.assert_close(fresh.conv1.weight, ckpt["backbone.conv1.weight"])


def test_knn_and_linear_commands(run_dir, capsys):
    assert main(["knn", str(run_dir), "--k", "5", "10"]) == 0
    res = json.loads((run_dir / "knn.json").read_text())
    assert "knn_class_top1" in res and "knn_super_top1" in res
    assert main(["linear", str(run_dir), "--epochs", "3", "--fractions", "1.0", "0.5"]) == 0
    res = json.loads((run_dir / "linear.json").read_text())
    assert "linear_class_100pct_top1" in res and "linear_super_50pct_top5" in res
    assert main(["umap", str(run_dir), "--method", "pca"]) == 0
    assert (run_dir / "embedding-pca.png").stat().st_size > 1000


def test_report_command(run_dir, tmp_path):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").is_file()


def test_rerun_into_existing_run_is_refused(run_dir, capsys):
    code = main(
        [
            "pretrain",
            "src/hexssl/configs/simclr-synthetic-demo.yaml",
            f"output_dir={run_dir.parent}",
            f"name={run_dir.name}",
        ]
    )
    assert code == 2
    assert "hexssl resume" in capsys.readouterr().err


def test_print_config_and_bad_key(capsys):
    assert (
        main(
            [
                "pretrain",
                "src/hexssl/configs/simclr-synthetic-demo.yaml",
                "optim.lr=0.5",
                "--print-config",
            ]
        )
        == 0
    )
    assert "lr: 0.5" in capsys.readouterr().out
    assert main(["pretrain", "src/hexssl/configs/simclr-synthetic-demo.yaml", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "lr" in err


def test_unknown_method_fails_before_writing(tmp_path, capsys):
    code = main(
        [
            "pretrain",
            "src/hexssl/configs/simclr-synthetic-demo.yaml",
            *tiny(tmp_path, "bad", "method.name=simclrr"),
        ]
    )
    assert code == 2
    assert "simclr" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_version_flag_names_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hexssl {version('hexssl')}"
