"""``hexssl env``: what the machine offers and the precision recommended for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.run import machine
from hexssl.run.machine import (
    cpu_model,
    environment,
    format_environment,
    installed,
    recommended_precision,
)

GPU_A100 = {"name": "A100", "memory_gib": 80.0, "capability": "8.0", "bf16": True}
GPU_V100 = {"name": "V100", "memory_gib": 32.0, "capability": "7.0", "bf16": False}


def test_cpu_model_reads_cpuinfo_and_falls_back(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000 @ 3 GHz\nflags\t: avx2\n")
    assert cpu_model(info) == "Test CPU 9000 @ 3 GHz"
    assert cpu_model(tmp_path / "missing")  # platform's answer, never empty


def test_installed_reads_metadata_without_importing() -> None:
    assert installed("torch") is not None and installed("torch").startswith("2.")
    assert installed("no-such-package-hexssl") is None


@pytest.mark.parametrize(
    ("native", "gpus", "expected"),
    [
        (False, [], "32"),
        (True, [], "bf16-mixed"),
        (False, [GPU_A100], "bf16-mixed"),
        (True, [GPU_V100], "16-mixed"),  # a GPU run ignores the CPU
        (False, [GPU_A100, GPU_V100], "16-mixed"),  # every device must do bf16
    ],
)
def test_recommended_precision(native: bool, gpus: list, expected: str) -> None:
    precision, why = recommended_precision(native, gpus)
    assert precision == expected and why


def test_environment_reports_what_the_probes_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(machine, "cuda_devices", lambda: [])
    env = environment()
    assert env["cpu_native_bf16"] is True and env["recommended_precision"] == "bf16-mixed"
    assert env["packages"]["lightning"] == installed("lightning")
    text = format_environment(env)
    assert "trainer.precision=bf16-mixed" in text and "native bf16: yes" in text
    assert "gpus: none" in text
    monkeypatch.setattr(machine, "cuda_devices", lambda: [GPU_A100])
    assert "A100 (80.0 GiB, sm 8.0)" in format_environment(environment())


def test_env_command_prints_lines_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    assert "torch:" in capsys.readouterr().out
    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["recommended_precision"] in ("32", "bf16-mixed", "16-mixed")
    assert env["torch_threads"] >= 1
