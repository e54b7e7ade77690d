"""The ``slurm`` marker: a real cluster runs the tests; without one they skip, or fail
under CI (``CI=true``), so they can never pass by skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subproc import run_limited

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slurm
def test_the_cluster_runs_a_two_task_job_step() -> None:
    res = run_limited(["srun", "--ntasks=2", "--time=1", "printenv", "SLURM_PROCID"])
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["0", "1"]


def run_the_marked_test(ci: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CONF", "CI")}
    test = f"{Path(__file__).relative_to(ROOT)}::test_the_cluster_runs_a_two_task_job_step"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test]
    return run_limited(cmd, cwd=ROOT, env={**env, "CI": ci})


def test_without_a_cluster_a_slurm_test_skips_with_the_reason() -> None:
    res = run_the_marked_test(ci="")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 skipped" in res.stdout
    assert "no SLURM cluster: SLURM_CONF is not set" in res.stdout


def test_under_ci_without_a_cluster_a_slurm_test_fails() -> None:
    res = run_the_marked_test(ci="true")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 error" in res.stdout  # failed in setup: counted as an error, exit 1
    assert "CI=true but no SLURM cluster: SLURM_CONF is not set" in res.stdout
