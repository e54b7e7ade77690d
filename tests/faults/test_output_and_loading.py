"""Issue 10.11 (quiet output, safe loading) and 10.6 (no test-selected best.ckpt)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from hexssl.cli import main
from hexssl.config import ConfigError
from hexssl.run.checkpoints import load_checkpoint
from tests.subproc import run_limited

from .helpers import TINY

NOISE = (
    "weights_only",
    "GPU available",
    "TPU available",
    "Tip:",
    "litlogger",
    "Experiment logs directory",
    "LeafSpec",
    "does not have many workers",
    "Warning",
)


def env_with_srun_outside_slurm(tmp_path: Path) -> dict[str, str]:
    """This environment without SLURM job variables, and an ``srun`` on PATH: a SLURM
    login node, where Lightning would print a hint about ``srun`` into every run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def test_a_run_prints_a_start_line_the_bar_and_a_summary(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "hexssl.cli",
        "pretrain",
        "src/hexssl/configs/simclr-synthetic-demo.yaml",
    ]
    args = [*TINY, "trainer.max_epochs=1", f"output_dir={tmp_path}", "name=q"]
    res = run_limited([*cmd, *args], env=env_with_srun_outside_slurm(tmp_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for word in NOISE:
        assert word not in out, (word, out)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[1].startswith("[hexssl] tip: this CPU computes bf16"):
        del lines[1]  # printed on CPUs with AMX / AVX512-BF16 only (the test below)
    assert lines[0].startswith("[hexssl] q: simclr resnet18 on synthetic (32 train / 32 val")
    assert lines[-1].startswith("[hexssl] q: simclr hex=off epochs=1 steps=2")
    assert len(lines) == 2  # progress bar off in TINY: nothing else
    assert sorted(p.name for p in (tmp_path / "q/checkpoints").iterdir()) == [
        "last.ckpt",
        "previous.ckpt",
    ]  # no best.ckpt selected on the validation (= test) split


@pytest.mark.parametrize("native_bf16", [True, False])
def test_an_fp32_run_on_a_native_bf16_cpu_prints_one_tip(  # type: ignore[no-untyped-def]
    native_bf16, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("hexssl.run.speed.cpu_has_fast_bf16", lambda: native_bf16)
    args = [*TINY, "trainer.max_epochs=1", f"output_dir={tmp_path}", "name=t"]
    assert main(["pretrain", "src/hexssl/configs/simclr-synthetic-demo.yaml", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    tips = [i for i, ln in enumerate(lines) if ln.startswith("[hexssl] tip:")]
    assert tips == ([1] if native_bf16 else [])  # right after the start line
    if native_bf16:
        assert "trainer.precision=bf16-mixed" in lines[1]


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


MARK = Path("/tmp/hexssl-pickle-ran")


def test_a_checkpoint_cannot_run_code(tmp_path, capsys):
    MARK.unlink(missing_ok=True)
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCode()}, bad)
    with pytest.raises(ConfigError, match="is refused: it holds a Python object"):
        load_checkpoint(bad)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.yaml").write_text("name: run\n")
    assert main(["export", str(tmp_path / "run"), "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is refused" in err and "weights_only=False" not in err
    assert not MARK.exists()


def test_best_is_no_longer_a_checkpoint_name(tmp_path):
    from hexssl.run.checkpoints import run_checkpoint

    (tmp_path / "checkpoints").mkdir()
    torch.save({"global_step": 3}, tmp_path / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match=r"best.ckpt.*checkpoints in .*: last"):
        run_checkpoint(tmp_path, "best")
