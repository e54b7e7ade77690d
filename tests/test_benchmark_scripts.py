"""The benchmark scripts still run end to end, at toy sizes (their numbers mean nothing here).

Benchmarks are not tests: nothing here checks a timing. These runs catch a script that
rotted (an API it calls changed, a result file it no longer writes).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.tiny import write_tree
from tests.subproc import run_limited

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "tiny-imagenet-hier50.tar.gz"
TINY_TRAIN = ["--width", "4", "--batch-size", "16", "--steps", "1", "--warmup", "1"]
SCRIPTS = {  # script -> (arguments besides --out, result files)
    "decode_throughput": (["--images", "4", "--repeats", "1"], ["decode_throughput"]),
    "loss_speed": (
        ["--repeats", "1", "--min-seconds", "0", "--sizes", "256", "320"],
        ["loss_speed"],
    ),
    "step_overhead": (["--methods", "simclr", *TINY_TRAIN], ["step_overhead"]),
    "data_throughput": ([*TINY_TRAIN, "--repeats", "1"], ["data_throughput"]),
}


def run_script(name: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args]
    # whole benchmark scripts: more CPU than one training run (OpenMP threads spin while
    # they wait, so a busy machine inflates CPU time), still failing fast on a hang
    return run_limited(cmd, cwd=ROOT, cpu_seconds=180, wall_seconds=300)


def assert_results(out: Path, stems: list[str]) -> None:
    for stem in stems:
        assert json.loads((out / f"{stem}.json").read_text()), stem
        assert (out / f"{stem}.md").read_text().count("|") > 4, stem  # a table


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_benchmark_script_runs(name: str, tmp_path: Path) -> None:
    args, stems = SCRIPTS[name]
    res = run_script(name, [*args, "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert_results(tmp_path, stems)
    if name == "loss_speed":  # each ratio comes with its spread between rounds
        for row in json.loads((tmp_path / "loss_speed.json").read_text())["rows"]:
            assert set(row["ratio_iqr"]) == set(row["ratio"]) and row["rounds"] >= 1
            assert all(lo <= hi for lo, hi in row["ratio_iqr"].values())


def test_loss_ab_times_two_trees_in_one_process(tmp_path: Path) -> None:
    """benchmarks/loss_ab.py against this very tree as the baseline: the baseline's losses
    are a second import (hexssl_baseline.losses), computing the same values."""
    args = ["--baseline", str(ROOT / "src"), "--sizes", "16", "--rounds", "2"]
    res = run_script(
        "loss_ab", [*args, "--losses", "hex_paper", "decoupled", "--out", str(tmp_path)]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "loss_ab.json").read_text())
    assert got["baseline_module"].startswith("hexssl_baseline.losses.")
    (row,) = got["rows"]
    assert row["two_b"] == 16 and row["rounds"] == 2 and row["aa_control"] > 0
    assert set(row["losses"]) == {"hex_paper", "decoupled"}
    for r in row["losses"].values():
        assert r["loss_difference"] == 0.0 and r["new_over_base"] > 0
    assert "| hex_paper |" in (tmp_path / "loss_ab.md").read_text()
    bad = run_script("loss_ab", ["--baseline", str(tmp_path), "--rounds", "1"])
    assert bad.returncode != 0 and "no hexssl/losses/__init__.py there" in bad.stderr


def test_the_committed_loss_speed_covers_hex_and_every_relative_and_names_its_machine() -> None:
    """Issue 24: the loss benchmark lists the relatives; a result names where it ran."""
    from hexssl.losses.relatives import RELATIVES

    res = json.loads((ROOT / "benchmarks/results/loss_speed.json").read_text())
    timed = set(res["rows"][0]["seconds"])
    assert {"infonce", "hex_paper", "hex_reference", "decoupled_weighted"} <= timed
    assert set(RELATIVES) <= timed, set(RELATIVES) - timed
    assert [r["two_b"] for r in res["rows"]] == [256, 512, 1024, 4096]
    assert all(set(r["ratio_iqr"]) == timed for r in res["rows"])  # the spread, per loss
    assert "bf16" in res["machine"]  # machine_summary(): CPU, vector unit, native bf16


@pytest.mark.skipif(not SHARED_DATA.is_file(), reason="needs ../shared/data (the preset's data)")
def test_train_speed_runs_and_names_its_machine(tmp_path: Path) -> None:
    args = ["--sizes", "4:16", "--settings", "fp32-cl", "--runs", "raw", "simclr"]
    res = run_script(
        "train_speed", [*args, "--steps", "1", "--warmup", "1", "--out", str(tmp_path)]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert_results(tmp_path, ["train_speed"])
    assert "bf16" in json.loads((tmp_path / "train_speed.json").read_text())["machine"]


def test_first_comparison_runs(tmp_path: Path) -> None:
    # a small image tree, not the script's default archive: decoding all of Tiny-ImageNet
    # from an empty cache took over 500 s of CPU on a busy 2-core machine
    classes = {"cat": "animal", "dog": "animal", "car": "vehicle", "bus": "vehicle"}
    data = write_tree(tmp_path / "tree", classes, n_train=16, n_val=4)
    args = ["--epochs", "1", "--width", "4", "--batch-size", "16", "--data", str(data)]
    args += ["--linear-epochs", "1", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]
    res = run_script("first_comparison", args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_results(tmp_path, ["first_comparison"])


def test_augment_speed_names_its_missing_dependency(tmp_path: Path) -> None:
    args = ["--batch", "8", "--sizes", "32", "--repeats", "1", "--out", str(tmp_path)]
    res = run_script("augment_speed", args)
    if importlib.util.find_spec("kornia") is None:
        assert res.returncode == 1 and "pip install -e '.[bench]'" in res.stderr
        assert "Traceback" not in res.stderr
    else:
        assert res.returncode == 0, res.stderr[-3000:]
        assert_results(tmp_path, ["augment_speed"])


@pytest.mark.skipif(not SHARED_DATA.is_file(), reason="needs ../shared/data (the preset's data)")
def test_precision_accuracy_runs(tmp_path: Path) -> None:
    args = ["--seeds", "0", "--settings", "fp32", "--out", str(tmp_path / "runs")]
    args += ["--results", str(tmp_path), "--set", "trainer.max_epochs=1", "backbone.kwargs.width=4"]
    args += ["data.options={image_size: 32, max_train_samples: 64}", "data.batch_size=16"]
    res = run_script("precision_accuracy", args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_results(tmp_path, ["precision_accuracy"])
    rows = json.loads((tmp_path / "precision_accuracy.json").read_text())["rows"]
    assert [(r["setting"], r["seed"]) for r in rows] == [("fp32", 0)]


def test_every_committed_result_has_its_line_in_the_results_readme() -> None:
    """benchmarks/results/README.md says what each file measured, where, and if current."""
    results = ROOT / "benchmarks" / "results"
    readme = (results / "README.md").read_text()
    named = set()
    for path in results.iterdir():
        if path.name == "README.md":
            continue
        stem = path.name.rsplit(".", 1)[0] if path.is_file() else path.name
        named.add(f"`{stem}.json`" if path.is_file() else f"`{path.name}/`")
    for path in (results / "history").iterdir():
        named.add(f"`history/{path.name.rsplit('.', 1)[0]}.json`")
    missing = sorted(n for n in named if n not in readme and n != "`history/`")
    assert not missing, missing


def load_benchmark(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_time_records_both_runs_and_the_machine(tmp_path: Path) -> None:
    demo_time = load_benchmark("demo_time")
    with pytest.raises(FileNotFoundError, match=r"simclr/summary\.json"):
        demo_time.collect(tmp_path, 1.0, None)
    for name, knn in (("simclr", 26.5), ("simclr-hex", 31.0)):
        (tmp_path / name).mkdir()
        summary = {"name": name, "epochs": 2, "steps": 62, "knn_class_top1": knn, "seconds": 90.0}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    result = demo_time.collect(tmp_path, 123.44, None)
    assert (result["steps"], result["wall_seconds"], result["epochs"]) == (124, 123.4, 2)
    assert "bf16" in result["machine"] and [r["name"] for r in result["runs"]] == list(
        demo_time.RUNS
    )
    page = demo_time.markdown(result)
    assert "2 min 03 s" in page and "| simclr-hex |" in page and "31.0" in page


def test_the_readme_demo_paragraph_is_the_committed_measurement() -> None:
    """The README's demo time and accuracies are those in results/demo_time.json."""
    result = json.loads((ROOT / "benchmarks" / "results" / "demo_time.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    minutes, secs = divmod(round(result["wall_seconds"]), 60)
    assert f"{minutes} min {secs:02d} s" in readme
    for run in result["runs"]:
        assert f"{run['knn_class_top1']:.1f} / {run['knn_super_top1']:.1f} %" in readme, run["name"]


@pytest.mark.slow
def test_demo_time_runs_the_installed_demo(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "demo_time.py"), "--epochs", "1"]
    res = run_limited([*cmd, "--out", str(tmp_path)], cwd=ROOT, cpu_seconds=900, wall_seconds=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_results(tmp_path, ["demo_time"])


# ------------------------------------------------------------------ the device call
def test_device_check_dry_run_measures_the_chosen_sections(tmp_path: Path) -> None:
    """benchmarks/gpu/device_check.py, dry-run on the CPU as before a device call: only
    the sections asked for run, each lands in gpu_check.json, and the summary is last."""
    classes = {"cat": "animal", "dog": "animal", "car": "vehicle", "bus": "vehicle"}
    data = write_tree(tmp_path / "tree", classes, n_train=16, n_val=4)
    cmd = [sys.executable, str(ROOT / "benchmarks/gpu/device_check.py"), "--dry-run"]
    cmd += ["--out", str(tmp_path / "out"), "--data", str(data)]
    sections = ["loss_speed", "train_speed", "train_speed_fused", "train_speed_compiled",
                "step_profile"]  # fmt: skip
    res = run_limited([*cmd, "--sections", *sections], cwd=ROOT, cpu_seconds=300, wall_seconds=400)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "out/gpu_check.json").read_text())
    assert set(got) == {"environment", *sections}, got.keys()
    assert {r["loss"] for r in got["loss_speed"]} >= {"infonce", "hex_paper", "decoupled"}
    assert {r["run"] for r in got["train_speed"]["rows"]} == {"raw", "simclr", "simclr-hex"}
    profiled = got["step_profile"]
    assert profiled["simclr-hex"]["cpu_ops_per_step"] > profiled["simclr"]["cpu_ops_per_step"]
    assert profiled["simclr-hex"]["top"][0]["ms_per_step"] > 0
    assert len(profiled["grew_with_hex"]) == 15  # the ops HEX made slower, largest first
    more = [g["more_ms_per_step"] for g in profiled["grew_with_hex"]]
    assert more == sorted(more, reverse=True)
    fused = {q["run"]: q["hex_on_over_off"] for q in got["train_speed_fused"]["ratios"]}
    assert fused["simclr-hex-fused"] > 0 and fused["simclr"] is None
    whole = {q["run"]: q["hex_on_over_off"] for q in got["train_speed_compiled"]["ratios"]}
    assert whole["simclr-hex-compiled"] > 0 and whole["simclr-compiled"] is None
    # the fused run's own files are folded into gpu_check.json: a call returns <= 8 files
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "gpu_check.json", "gpu_check.md", "train_speed_cuda.json", "train_speed_cuda.md"
    ]  # fmt: skip
    assert res.stdout.rstrip().endswith("|")  # the summary table is printed last


def test_session_script_passes_the_chosen_check_sections(tmp_path: Path) -> None:
    """session.sh forwards CHECK_SECTIONS to the check (a stand-in Python records it)."""
    import os

    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        'case "$1" in *study_length.py) echo "0  ";; esac\n'  # nothing left to train
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "CHECK_SECTIONS": "loss_speed train_speed"}
    cmd = ["bash", "benchmarks/gpu/session.sh", str(tmp_path / "out"), "data.tar.gz", "300"]
    res = run_limited(cmd, cwd=ROOT, env=env, cpu_seconds=30, wall_seconds=60)
    assert res.returncode == 0, res.stdout + res.stderr
    check = next(ln for ln in log.read_text().splitlines() if "device_check.py" in ln)
    assert check.endswith("--sections loss_speed train_speed"), check
