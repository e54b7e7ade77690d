"""The logic of benchmarks/train_speed.py, on the CPU at toy size (no timing is checked).

The harness alternates the runs it compares over rounds, reports the median of the
rounds' medians with their spread and host ms beside GPU ms, keeps logging out of the
timed window and stops when a compiled run fell back to eager (issue 33).
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks/train_speed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_args(**kw: Any) -> argparse.Namespace:
    base = dict(
        sizes=["4:16"], settings=["fp32-cl"], runs=["simclr", "simclr-hex"], rounds=3,
        steps=2, warmup=1, device="cpu", preset=["configs/simclr.yaml"],
        data_overrides=["data.dataset=synthetic", "data.root=null",
                        "data.options={max_train_samples: 96, image_size: 16}"],
    )  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_runs_alternate_over_rounds(ts):
    assert ts.round_order(["a", "b", "c"], 3) == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]


def test_rows_are_the_median_of_round_medians_with_their_spread(ts, monkeypatch):
    calls: list[str] = []
    per_run = {"raw": [1.0, 3.0, 2.0], "simclr": [2.0, 4.0, 3.0], "simclr-hex": [4.0, 4.0, 5.0]}

    def fake(run: str, *args: Any) -> Any:
        calls.append(run)
        t = per_run[run][sum(c == run for c in calls) - 1]
        return ts.step_times([t, t + 10.0, t - 0.5], [t / 2] * 3)  # host, GPU seconds

    monkeypatch.setattr(ts, "full_step_times", fake)
    monkeypatch.setattr(ts, "raw_step_times", lambda *a: fake("raw"))
    rows = ts.measure(tiny_args(runs=["raw", "simclr", "simclr-hex"]))
    forth, back = ["raw", "simclr", "simclr-hex"], ["simclr-hex", "simclr", "raw"]
    assert calls == [*forth, *back, *forth]
    by = {r["run"]: r for r in rows}
    assert by["simclr"]["round_seconds"] == [1.0, 2.0, 1.5]  # GPU medians of each round
    assert by["simclr"]["seconds"] == 1.5 and by["simclr"]["gpu_ms"] == 1500.0
    assert by["simclr"]["spread"] == pytest.approx(1.0 / 1.5)
    assert by["simclr"]["host_ms"] == 3000.0  # the host median beside it
    assert by["simclr-hex"]["img_per_s"] == pytest.approx(16 / 2.0)
    hex_ratio = {q["run"]: q["hex_on_over_off"] for q in ts.ratios(rows)}
    assert hex_ratio["simclr-hex"] == pytest.approx(2.0 / 1.5)


def test_a_tiny_real_run_times_unlogged_steps_only(ts):
    times = ts.full_step_times("simclr-hex", 4, 16, ts.SETTINGS["fp32-cl"], tiny_args())
    assert len(times["host"]) == 2 and times["gpu"] is None
    assert all(t > 0 for t in times["host"])


def test_a_compiled_run_that_fell_back_to_eager_stops_the_script(ts, monkeypatch):
    import hexssl.run.speed

    def broken_compile(fn: Any, **kwargs: Any) -> Any:
        def fails(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("no compiler here")

        return fails

    monkeypatch.setattr(hexssl.run.speed.torch, "compile", broken_compile)
    with pytest.raises(ts.CompileFallbackError, match="fell back to eager"):
        ts.full_step_times("simclr-compiled", 4, 16, ts.SETTINGS["fp32-cl"], tiny_args())


def test_graph_breaks_count_as_a_fallback_where_strict(ts):
    ts.check_compiled("simclr-compiled", [], 0, strict=True)
    ts.check_compiled("simclr-compiled", [], 2, strict=False)  # the CPU's sparse HEX path
    with pytest.raises(ts.CompileFallbackError, match="graph breaks"):
        ts.check_compiled("simclr-compiled", [], 2, strict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(
            "torch.jit.script_method is deprecated: use torch.compile",
            DeprecationWarning,
            stacklevel=2,
        )
        ts.check_compiled("x", caught, 0, strict=False)  # an unrelated mention of compile
        warnings.warn(
            "torch.compile of backbone failed (X); runs eagerly", RuntimeWarning, stacklevel=2
        )
    with pytest.raises(ts.CompileFallbackError):
        ts.check_compiled("x", caught, 0, strict=False)


def test_a_step_that_logs_inside_the_timed_window_stops_the_script(ts):
    args = tiny_args()
    args.data_overrides = [*args.data_overrides, "trainer.log_every_n_steps=1"]
    with pytest.raises(SystemExit, match="logged inside the timed window"):
        ts.full_step_times("simclr", 4, 16, ts.SETTINGS["fp32-cl"], args)
