"""PNG plots for runs and representations (matplotlib, Agg canvas, never a window).

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas instead of pyplot,
so nothing global is switched and nothing is ever shown. Every file has a fixed size:

* curves and bars: ``FIGSIZE`` x ``DPI`` = 8 x 5 in at 100 dpi = **800 x 500 px**;
* 2-D embeddings: ``EMBED_FIGSIZE`` x ``DPI`` = 8 x 8 in at 100 dpi = **800 x 800 px**.

(``bbox_inches="tight"`` is deliberately not used: it would change the pixel size.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

logger = logging.getLogger(__name__)

FIGSIZE = (8.0, 5.0)  # inches -> 800 x 500 px at DPI
EMBED_FIGSIZE = (8.0, 8.0)  # inches -> 800 x 800 px at DPI
DPI = 100
PALETTE = [f"C{i}" for i in range(10)]  # the default tab10 cycle

RGBA = tuple[float, float, float, float]
Columns = Mapping[str, Any]  # column name -> 1-D array-like (a "DataFrame-like dict")


# ----------------------------------------------------------------------------- helpers
def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """A figure on its own Agg canvas (no pyplot state, no window)."""
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at exactly ``figsize * DPI`` pixels and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _xy(columns: Columns, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite (x, y) pairs of one run; the row index stands in for a missing x column."""
    y = np.asarray(columns[metric], dtype=float)  # (R,)
    xs = np.asarray(columns[x], dtype=float) if x in columns else np.arange(y.shape[0], dtype=float)
    keep = np.isfinite(xs) & np.isfinite(y)  # CSVLogger rows are sparse: most cells empty
    return xs[keep], y[keep]


# ------------------------------------------------------------------------------ curves
def plot_curves(
    runs: Mapping[str, Columns],
    metric: str,
    path: str | Path,
    x: str = "step",
    groups: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """One line per run of ``metric`` against ``x`` (``step`` or ``epoch``).

    Runs without the metric are skipped; a figure with no data says so. Runs that map to
    the same ``groups`` label (e.g. seeds) share a colour and one legend entry.

    Args:
        runs: run name -> columns, e.g. from ``report.read_metrics``.
        metric: column to plot, e.g. ``train/hex/eps``.
        path: output PNG (800 x 500 px).
        x: x-axis column.
        groups: run name -> group label; defaults to the run name.
        title: figure title; defaults to the metric name.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> hex_run = {"step": np.arange(5.0), "train/hex/eps": np.linspace(0.9, 0.5, 5)}
        >>> png = plot_curves({"hex": hex_run}, "train/hex/eps", Path(tmp.name) / "eps.png")
        >>> png.name, png.stat().st_size > 0  # runs read from disk: report.read_metrics
        ('eps.png', True)
        >>> tmp.cleanup()
    """
    fig = new_figure()
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for name, columns in runs.items():
        if metric not in columns:
            continue
        group = groups.get(name, name) if groups is not None else name
        label = None if group in colours else group
        colour = colours.setdefault(group, PALETTE[len(colours) % len(PALETTE)])
        ax.plot(*_xy(columns, metric, x), color=colour, label=label, linewidth=1.2)
    if colours:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no data for {metric}", ha="center", va="center")
    ax.set(xlabel=x, ylabel=metric, title=title or metric)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# -------------------------------------------------------------------------------- bars
def plot_bars(
    values: Mapping[str, Mapping[str, float]],
    keys: Sequence[str],
    path: str | Path,
    errors: Mapping[str, Mapping[str, float]] | None = None,
    key_labels: Mapping[str, str] | None = None,
    ylabel: str = "accuracy (%)",
    title: str | None = None,
) -> Path:
    """Grouped bars: one group per run, one bar per key (e.g. kNN class vs superclass).

    Missing values are left out. ``errors`` (same layout) draws ± error bars, e.g. the
    std over seeds.

    Args:
        values: run name -> {key: value}.
        keys: which keys to draw, e.g. ``("knn_class_top1", "knn_super_top1")``.
        path: output PNG (800 x 500 px).
        errors: run name -> {key: error}.
        key_labels: legend text per key; defaults to the key.
        ylabel, title: axis label and title.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> png = plot_bars({"simclr": {"knn_class_top1": 55.0, "knn_super_top1": 66.0}},
        ...                 ("knn_class_top1", "knn_super_top1"), Path(tmp.name) / "knn.png")
        >>> png.name, png.stat().st_size > 0
        ('knn.png', True)
        >>> tmp.cleanup()
    """
    fig = new_figure()
    ax = fig.add_subplot()
    names = list(values)
    width = 0.8 / max(len(keys), 1)
    for j, key in enumerate(keys):
        pos = np.arange(len(names)) + (j - (len(keys) - 1) / 2) * width  # (R,)
        height = np.array([values[n].get(key, np.nan) for n in names], dtype=float)
        err = None if errors is None else [errors.get(n, {}).get(key, 0.0) for n in names]
        label = key_labels.get(key, key) if key_labels is not None else key
        bars = ax.bar(pos, np.nan_to_num(height), width, yerr=err, label=label, capsize=3)
        ax.bar_label(
            bars, labels=[f"{h:.1f}" if np.isfinite(h) else "" for h in height], fontsize=7
        )
    ax.set_xticks(np.arange(len(names)), names, rotation=20 if len(names) > 4 else 0)
    ax.set(ylabel=ylabel, title=title or "")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class IntervalRow:
    """One row of an interval plot: a mean, its interval and the values behind it."""

    label: str
    mean: float
    lo: float  # NaN when there is no interval (fewer than 2 values)
    hi: float
    points: Sequence[float] = ()
    group: str = ""  # rows of one group share a colour


def plot_intervals(
    rows: Sequence[IntervalRow],
    path: str | Path,
    xlabel: str = "difference (points)",
    title: str | None = None,
) -> Path:
    """Forest plot: one line per row, the mean as a dot on its interval, the values
    behind it as small crosses, and a dashed line at 0.

    Rows run top to bottom in the given order; a row without an interval shows its
    points and mean only. The height grows with the number of rows (0.32 in per row).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rows = [IntervalRow("kNN class", 0.1, -2.4, 2.6, (0.4, 0.9, -1.0), "hex"),
        ...         IntervalRow("kNN super", -1.0, -2.8, 0.8, (-1.3, -0.2, -1.6), "hex")]
        >>> plot_intervals(rows, Path(tmp.name) / "diff.png").stat().st_size > 0
        True
        >>> tmp.cleanup()
    """
    if not rows:
        raise ValueError("plot_intervals needs at least one row")
    height = max(2.5, 1.2 + 0.32 * len(rows))
    fig = new_figure((FIGSIZE[0], height))
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i  # the first row on top
        colour = colours.setdefault(row.group, PALETTE[len(colours) % len(PALETTE)])
        if math.isfinite(row.lo) and math.isfinite(row.hi):
            ax.plot([row.lo, row.hi], [y, y], color=colour, linewidth=2)
        ax.plot([row.mean], [y], "o", color=colour, markersize=6)
        if len(row.points):
            ax.plot(list(row.points), [y] * len(row.points), "x", color="0.3", markersize=5)
    ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [r.label for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set(xlabel=xlabel, title=title or "")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- embedding
def pca_2d(X: Tensor) -> Tensor:
    """Projection on the first two principal components (exact SVD, sign-fixed).

    Shape:
        X: (N, D) -> (N, 2).
    """
    Xc = X.double() - X.double().mean(dim=0)  # (N, D)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)  # Vh: (min(N, D), D)
    comps = Vh[:2]  # (<=2, D)
    signs = comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)).sign()  # (<=2, 1)
    coords = Xc @ (comps * signs).T  # (N, <=2)
    return torch.nn.functional.pad(coords, (0, 2 - coords.shape[1])).float()  # (N, 2)


def umap_2d(X: Tensor, seed: int = 0) -> Tensor | None:
    """UMAP (McInnes et al. 2018) embedding, or ``None`` when umap-learn is missing.

    Shape:
        X: (N, D) -> (N, 2).
    """
    try:
        import umap  # optional dependency: pip install "hexssl[umap]"
    except ImportError:
        return None
    reducer = umap.UMAP(n_components=2, random_state=seed)
    return torch.as_tensor(np.asarray(reducer.fit_transform(X.double().numpy())), dtype=torch.float)


def embed_2d(X: Tensor, method: str = "umap", seed: int = 0) -> tuple[Tensor, str]:
    """2-D embedding and the method actually used (UMAP falls back to PCA with a notice).

    Shape:
        X: (N, D) -> (N, 2).
    """
    if method not in EMBEDDERS:
        raise ValueError(f"method={method!r} is unknown; choose from {sorted(EMBEDDERS)}")
    coords = EMBEDDERS[method](X, seed)
    if coords is None:
        logger.warning("umap-learn is not installed; plot_embedding_2d falls back to PCA")
        return pca_2d(X), "pca"
    return coords, method


EMBEDDERS: dict[str, Callable[[Tensor, int], Tensor | None]] = {
    "pca": lambda X, seed: pca_2d(X),
    "umap": umap_2d,
}


def _shade(rgba: RGBA, t: float) -> RGBA:
    """Lighten (t > 0, towards white) or darken (t < 0, towards black) a colour."""
    r, g, b = (c + (1.0 - c) * t if t >= 0 else c * (1.0 + t) for c in rgba[:3])
    return (r, g, b, 1.0)


def _base_colour(i: int, n: int, group: int) -> RGBA:
    """Distinct hue for group i of n: tab10 up to 10 groups, then evenly spaced turbo."""
    if group < 0:
        return to_rgba("lightgray")  # missing superclass
    if n <= 10:
        return to_rgba(f"C{i}")
    return to_rgba(colormaps["turbo"](0.05 + 0.9 * i / (n - 1)))


def class_colours(labels: Tensor, superlabels: Tensor) -> tuple[np.ndarray, dict[int, RGBA]]:
    """RGBA per point: hue from the superclass, shade from the class within it.

    Without any superlabel the classes themselves give the hue.

    Shape:
        labels, superlabels: (N,) -> colours (N, 4) and {superclass: base colour}.
    """
    if bool((superlabels < 0).all()):
        superlabels = labels
    groups = superlabels.unique().tolist()
    colours = np.zeros((labels.shape[0], 4))  # (N, 4)
    bases = {g: _base_colour(i, len(groups), g) for i, g in enumerate(groups)}
    for g, base in bases.items():
        in_group = superlabels == g  # (N,)
        classes = labels[in_group].unique().tolist()
        shades = np.linspace(-0.35, 0.35, len(classes)) if len(classes) > 1 else [0.0]
        for c, t in zip(classes, shades):
            colours[(in_group & (labels == c)).numpy()] = _shade(base, float(t))
    return colours, bases


def _subsample(n: int, max_points: int, seed: int) -> Tensor:
    """Seeded random subset of at most ``max_points`` indices (all when n is small)."""
    if n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]


def plot_embedding_2d(
    feats: Tensor,
    labels: Tensor,
    superlabels: Tensor,
    path: str | Path,
    method: str = "umap",
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Scatter of a 2-D embedding coloured by superclass, classes as shades of it.

    ``method="umap"`` needs umap-learn; without it PCA is used and a warning is logged.

    Args:
        feats, labels, superlabels: representations and their labels (-1 if missing).
        path: output PNG (800 x 800 px).
        method: ``"umap"`` or ``"pca"``.
        max_points: seeded random subsample size, to keep UMAP and the file fast.
        seed: subsample and UMAP seed.
        title: figure title; defaults to the method used.

    Shape:
        feats: (N, D); labels: (N,); superlabels: (N,).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> feats, y = torch.randn(60, 8), torch.arange(60) % 6
        >>> png = plot_embedding_2d(feats, y, y % 3, Path(tmp.name) / "emb.png", method="pca")
        >>> png.name, png.stat().st_size > 0
        ('emb.png', True)
        >>> tmp.cleanup()
    """
    if not feats.shape[0] == labels.shape[0] == superlabels.shape[0]:
        raise ValueError(
            f"row counts differ: feats {feats.shape[0]}, labels {labels.shape[0]}, "
            f"superlabels {superlabels.shape[0]}"
        )
    idx = _subsample(feats.shape[0], max_points, seed)
    coords, used = embed_2d(feats[idx].float().cpu(), method, seed)  # (n, 2)
    colours, bases = class_colours(labels[idx].cpu(), superlabels[idx].cpu())
    fig = new_figure(EMBED_FIGSIZE)
    ax = fig.add_subplot()
    ax.scatter(coords[:, 0].numpy(), coords[:, 1].numpy(), c=colours, s=4, linewidths=0)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=f"{g}") for g, c in bases.items()]
    ax.legend(handles=handles[:20], title="superclass", fontsize=6, title_fontsize=7, loc="best")
    ax.set(title=title or f"{used.upper()} of {len(idx)} points", xticks=[], yticks=[])
    return save_figure(fig, path)
