"""``hexssl study --executor slurm`` against a real SLURM (scripts/slurm-cluster.sh).

Each test is a tiny synthetic study through the CLI; the submitting process exits at
once and the test waits on the result files, as a user would.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from hexssl.study.folder import StudyFolder
from tests.faults.helpers import step_losses
from tests.slurm.studies import (
    LONG,
    LONG_STEPS,
    TINY,
    dump,
    job_state,
    metrics,
    study,
    submitted_runs,
    task_of,
    wait_until,
)
from tests.subproc import run_limited

pytestmark = pytest.mark.slurm
RUNS = [("simclr", 0), ("simclr-hex", 0), ("simclr", 1), ("simclr-hex", 1)]
SLURM = ["--executor", "slurm"]


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def scancel(*args: str) -> None:
    res = run_limited(["scancel", *args], wall_seconds=60)
    assert res.returncode == 0, res.stderr


def test_a_study_through_slurm_gives_the_results_of_the_local_executor(tmp_path):
    out = ok(study(tmp_path, "slurm", *SLURM))
    assert "submitted SLURM job array" in out and "4 to run" in out
    ok(study(tmp_path, "local", "--executor", "local", "--workers", "2"))  # as SLURM runs
    on_slurm, local = StudyFolder(tmp_path / "slurm"), StudyFolder(tmp_path / "local")
    wait_until("4 results", lambda: all(on_slurm.result_path(*r).is_file() for r in RUNS), on_slurm)
    for run in RUNS:
        assert metrics(on_slurm, *run) == metrics(local, *run), run
    assert submitted_runs(on_slurm) == [RUNS]  # one array, task i = run i
    status = ok(study(tmp_path, "slurm", *SLURM, "--status"))
    assert "4 runs: 4 done, 0 running, 0 queued, 0 failed" in status


def test_usr1_requeues_a_job_that_resumes_to_the_result_of_an_uninterrupted_one(tmp_path):
    one_run = [*SLURM, "--arms", "simclr-hex", "--seeds", "0"]
    for name in ("whole", "cut"):  # cut last: its training starts as we begin to watch
        ok(study(tmp_path, name, *one_run, overrides=LONG))
    cut, whole = StudyFolder(tmp_path / "cut"), StudyFolder(tmp_path / "whole")
    ckpt = cut.run_dir("simclr-hex", 0) / "checkpoints" / "last.ckpt"
    wait_until("a first checkpoint", ckpt.is_file, cut)
    scancel("--signal=USR1", "--batch", task_of(cut, "simclr-hex", 0))  # as --signal=B:USR1@N
    done = [f.result_path("simclr-hex", 0) for f in (cut, whole)]
    wait_until("both results", lambda: all(p.is_file() for p in done), cut, whole)
    log = cut.log_path("simclr-hex", 0).read_text()
    stop = re.search(r"stopped by SIGUSR1: saved step (\d+) .*; requeued SLURM job", log)
    assert stop, dump(cut)
    assert 0 < int(stop[1]) < LONG_STEPS, "the signal came after training: make LONG longer"
    assert "start 2" in log and "resuming from" in log
    assert metrics(cut, "simclr-hex", 0) == metrics(whole, "simclr-hex", 0)
    assert step_losses(cut.run_dir("simclr-hex", 0)) == step_losses(whole.run_dir("simclr-hex", 0))


def test_a_cancelled_job_is_failed_with_its_log_and_only_it_is_resubmitted(tmp_path):
    args = [*SLURM, "--arms", "simclr"]  # seeds 0 and 1
    ok(study(tmp_path, "c", *args, overrides=LONG))
    c = StudyFolder(tmp_path / "c")
    ckpt = c.run_dir("simclr", 1) / "checkpoints" / "last.ckpt"
    wait_until("a first checkpoint of simclr-s1", ckpt.is_file, c)
    scancel(task_of(c, "simclr", 1))
    wait_until(
        "simclr-s0 done, simclr-s1 cancelled",
        lambda: c.result_path("simclr", 0).is_file() and job_state(c, "simclr", 1) == "CANCELLED",
        c,
    )
    # later commands need no --executor: the results folder says which placed its runs
    status = ok(study(tmp_path, "c", "--arms", "simclr", "--status", overrides=LONG))
    row = next(line for line in status.splitlines() if line.startswith("| simclr-s1 "))
    assert "| failed |" in row and "CANCELLED" in row, status
    assert f"log {c.log_path('simclr', 1)}" in row
    again = ok(study(tmp_path, "c", "--arms", "simclr", overrides=LONG))
    assert "1 done, 0 running or queued elsewhere, 1 to run" in again
    assert submitted_runs(c) == [[("simclr", 0), ("simclr", 1)], [("simclr", 1)]]
    wait_until("simclr-s1 done", c.result_path("simclr", 1).is_file, c)
    assert "resuming from" in c.log_path("simclr", 1).read_text()  # from the saved step


# DDP equals one process only without BatchNorm and with deterministic views (as in
# tests/pipeline/test_ddp.py): then the split of the global batch is the only difference
NO_BATCHNORM = [
    *TINY,
    "backbone.name=vit_tiny",
    "backbone.kwargs={img_size: 16, patch_size: 8}",
    "method.params={projector: moco_v2, proj_hidden: 32, proj_out: 16}",
    "data.aug_overrides={crop: false, flip_p: 0.0, jitter_p: 0.0, gray_p: 0.0}",
    "optim.name=sgd",
]


def test_a_two_task_srun_ddp_run_equals_one_process_with_the_same_global_batch(tmp_path):
    ddp = [*NO_BATCHNORM, "data.batch_size=8", "trainer.devices=2", "trainer.strategy=ddp"]
    one_run = ["--arms", "simclr-hex", "--seeds", "0"]
    out = ok(study(tmp_path, "ddp", *SLURM, *one_run, overrides=ddp))
    assert "submitted SLURM job array" in out
    ok(study(tmp_path, "one", "--executor", "local", *one_run, overrides=NO_BATCHNORM))
    two = StudyFolder(tmp_path / "ddp")
    wait_until("the DDP run's result", two.result_path("simclr-hex", 0).is_file, two)
    log = two.log_path("simclr-hex", 0).read_text()
    assert "2 x cpu" in log, log  # the start line: two processes trained it
    script = next((tmp_path / "ddp" / "slurm").glob("*.sh")).read_text()
    assert "exec srun" in script
    one = StudyFolder(tmp_path / "one")
    losses = step_losses(one.run_dir("simclr-hex", 0))
    assert list(losses) == [0, 1, 2, 3]
    ddp_losses = step_losses(two.run_dir("simclr-hex", 0))
    assert list(ddp_losses) == list(losses)
    assert list(ddp_losses.values()) == pytest.approx(list(losses.values()), rel=1e-4)
