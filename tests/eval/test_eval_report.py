"""Run directories -> metrics, summaries and a markdown comparison."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hexssl.eval.report import compare_runs, format_cell, read_metrics, read_summary, run_label

HEADER = [
    "epoch",
    "step",
    "train/hex/eps",
    "train/hex/neighbour_frac",
    "val/online_acc1",
    "val/purity_super",
]


def write_run(
    root: Path, name: str, knn: tuple[float, float] | None, acc: float, label: str | None = None
) -> Path:
    """A tiny run dir in CSVLogger format: train rows every step, val rows per epoch."""
    run = root / name
    run.mkdir(parents=True)
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for step in range(6):
            w.writerow([step // 3, step, 0.9 - 0.01 * step, 0.01 * step, "", ""])
            if step % 3 == 2:
                w.writerow([step // 3, step, "", "", acc + step, 0.5])
    summary: dict[str, object] = {"seed": 0}
    if knn is not None:
        summary.update(knn_class_top1=knn[0], knn_super_top1=knn[1])
    if label is not None:
        summary["label"] = label
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_read_metrics_sparse_cells_are_nan(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", (50.0, 60.0), acc=10.0)
    m = read_metrics(run)
    assert set(m) == set(HEADER) and m["step"].shape == (8,)
    acc = m["val/online_acc1"]
    assert np.isnan(acc).sum() == 6 and acc[np.isfinite(acc)].tolist() == [12.0, 15.0]
    assert read_summary(run)["knn_class_top1"] == 50.0
    assert read_summary(tmp_path) == {}
    with pytest.raises(FileNotFoundError, match=r"metrics\.csv"):
        read_metrics(tmp_path)


def test_run_label_strips_seed_suffix_unless_summary_names_it(tmp_path: Path) -> None:
    assert run_label(tmp_path / "simclr-hex-seed3", {}) == "simclr-hex"
    assert run_label(tmp_path / "simclr_seed12", {}) == "simclr"
    assert run_label(tmp_path / "seedless", {}) == "seedless"
    assert run_label(tmp_path / "x-seed0", {"label": "HEX"}) == "HEX"


def test_format_cell() -> None:
    assert format_cell([1.0, 3.0]) == f"2 ± {math.sqrt(2):.4g}"
    assert format_cell([5.0]) == "5"
    assert format_cell([math.nan]) == "-"


def test_compare_runs_groups_seeds_and_writes_plots(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path / "runs", "hex-seed0", (50.0, 60.0), acc=10.0),
        write_run(tmp_path / "runs", "hex-seed1", (52.0, 64.0), acc=12.0),
        write_run(tmp_path / "runs", "baseline_seed0", (45.0, 55.0), acc=9.0, label="simclr"),
    ]
    out = tmp_path / "report"
    md = compare_runs(runs, out)
    assert (out / "report.md").read_text() == md
    hex_row = next(line for line in md.splitlines() if line.startswith("| hex |"))
    assert "| 2 |" in hex_row
    assert f"51 ± {math.sqrt(2):.4g}" in hex_row  # knn_class_top1 over two seeds
    assert f"62 ± {math.sqrt(8):.4g}" in hex_row  # knn_super_top1
    assert f"16 ± {math.sqrt(2):.4g}" in hex_row  # final val/online_acc1 (15 and 17)
    simclr_row = next(line for line in md.splitlines() if line.startswith("| simclr |"))
    assert "| 1 | 45 | 55 |" in simclr_row and "±" not in simclr_row
    header = md.splitlines()[2].split(" | ")
    assert "seed" not in header and "seeds" in header  # the seed setting is not a result
    for png in ("eps.png", "neighbour_frac.png", "online_acc_val.png", "knn.png"):
        assert (out / png).stat().st_size > 0 and f"({png})" in md
    assert not (out / "online_acc_train.png").exists()  # not logged by these runs


def test_compare_runs_without_summaries_or_curves(tmp_path: Path) -> None:
    run = tmp_path / "bare-seed0"
    run.mkdir()
    md = compare_runs([run], tmp_path / "out")
    assert "| bare | 1 |" in md and "no kNN results" in md and "no run logged" in md


def test_compare_runs_rejects_missing_dirs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        compare_runs([tmp_path / "nope"], tmp_path / "out")
