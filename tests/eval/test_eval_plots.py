"""Plots are written as PNGs of the documented pixel size."""

import builtins
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hexssl.eval import plots
from hexssl.eval.plots import (
    IntervalRow,
    class_colours,
    pca_2d,
    plot_bars,
    plot_curves,
    plot_embedding_2d,
    plot_intervals,
)


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def sparse_run(offset: float) -> dict[str, np.ndarray]:
    """CSVLogger-like columns: eps logged on even rows only."""
    step = np.arange(10, dtype=float)
    eps = np.where(step % 2 == 0, 0.9 - 0.05 * step + offset, np.nan)
    return {"step": step, "epoch": step // 5, "train/hex/eps": eps}


def test_plot_curves_size_and_sparse_columns(tmp_path: Path) -> None:
    runs = {"a-seed0": sparse_run(0.0), "a-seed1": sparse_run(0.01), "b": sparse_run(0.1)}
    groups = {"a-seed0": "a", "a-seed1": "a", "b": "b"}
    out = plot_curves(runs, "train/hex/eps", tmp_path / "eps.png", groups=groups)
    assert out == tmp_path / "eps.png" and png_size(out) == (800, 500)


def test_plot_curves_without_data_still_writes(tmp_path: Path) -> None:
    out = plot_curves({"a": sparse_run(0.0)}, "val/online_acc1", tmp_path / "none.png", x="epoch")
    assert png_size(out) == (800, 500)


def test_plot_bars_with_missing_values_and_errors(tmp_path: Path) -> None:
    values = {
        "simclr": {"knn_class_top1": 50.0, "knn_super_top1": 62.0},
        "hex": {"knn_class_top1": 53.0},
    }
    errors = {"simclr": {"knn_class_top1": 1.0, "knn_super_top1": 0.5}}
    out = plot_bars(
        values, ("knn_class_top1", "knn_super_top1"), tmp_path / "sub" / "knn.png", errors=errors
    )
    assert png_size(out) == (800, 500)


def test_plot_intervals_grows_with_its_rows(tmp_path: Path) -> None:
    rows = [
        IntervalRow(f"r{i}", 0.5 * i, 0.5 * i - 1, 0.5 * i + 1, (0.0, 1.0), "g") for i in range(12)
    ]
    rows.append(IntervalRow("one pair", 2.0, float("nan"), float("nan"), (2.0,), "h"))
    out = plot_intervals(rows, tmp_path / "many.png")
    assert png_size(out) == (800, round(100 * (1.2 + 0.32 * 13)))
    few = plot_intervals(rows[:2], tmp_path / "few.png", title="t")
    assert png_size(few) == (800, 250)  # the minimum height
    with pytest.raises(ValueError, match="at least one row"):
        plot_intervals([], tmp_path / "none.png")


def test_plot_embedding_pca(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 6
    feats = torch.randn(300, 10, generator=gen) + labels[:, None].float()
    out = plot_embedding_2d(
        feats, labels, labels // 2, tmp_path / "pca.png", method="pca", max_points=200
    )
    assert png_size(out) == (800, 800)


def test_umap_falls_back_to_pca_with_a_notice(tmp_path, monkeypatch, caplog) -> None:
    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap":
            raise ImportError("umap-learn not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    feats, labels = torch.randn(50, 4), torch.arange(50) % 5
    with caplog.at_level(logging.WARNING, logger=plots.__name__):
        out = plot_embedding_2d(
            feats, labels, torch.full((50,), -1), tmp_path / "u.png", method="umap"
        )
    assert "falls back to PCA" in caplog.text and png_size(out) == (800, 800)


def test_unknown_embedding_method_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'tsne'"):
        plot_embedding_2d(
            torch.randn(5, 3),
            torch.zeros(5).long(),
            torch.zeros(5).long(),
            tmp_path / "x.png",
            method="tsne",
        )


def test_pca_recovers_the_dominant_direction() -> None:
    t = torch.linspace(-1, 1, 50)
    X = torch.stack([3 * t, 0.1 * torch.cos(7 * t), torch.zeros(50)], dim=1)
    coords = pca_2d(X)
    assert coords.shape == (50, 2)
    assert torch.allclose(coords[:, 0].abs(), (3 * t).abs(), atol=1e-3)


def test_class_colours_share_hue_within_a_superclass() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    colours, bases = class_colours(labels, torch.tensor([0, 0, 1, 1]))
    assert set(bases) == {0, 1} and colours.shape == (4, 4)
    assert not np.allclose(colours[0], colours[1])  # two shades of one superclass colour
    lighter, darker = colours[1, :3], colours[0, :3]
    assert (lighter >= darker - 1e-9).all()
