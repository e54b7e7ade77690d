"""Issue 34.4: one writer per run folder.

A live run holds ``<run>/.hexssl.lock``; a second ``pretrain`` or a ``resume`` aimed at
it gets one line naming the other process and exit 2, and the first run is untouched. A
lock left by a dead process is taken over with a note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch.callbacks import Callback

from hexssl.cli import main
from hexssl.run.lock import LOCK_NAME, RunLockedError, hold_run_lock, lock_holder
from hexssl.run.train import pretrain
from tests.faults.helpers import checkpoint, tiny_run

TINY_CLI = [
    "simclr",
    "synthetic-cpu",
    "method.params={proj_hidden: 16, proj_out: 8}",
    "backbone.kwargs={stem: cifar, width: 4}",
    "data.batch_size=16",
    "data.image_size=16",
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "trainer.checkpoint_every_n_steps=1",
    "eval.purity_every_n_steps=0",
    "eval.knn_at_end=false",
    "optim.warmup_epochs=0",
]


class SecondWriterAt(Callback):
    """At global step ``step``, run ``hexssl <argv>`` against the live run; keep its code."""

    def __init__(self, step: int, argv: list[str]) -> None:
        self.step, self.argv, self.code = step, argv, -1

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            self.code = main(self.argv)


def test_a_second_pretrain_into_a_live_run_is_refused_and_the_first_finishes(tmp_path, capsys):
    second = SecondWriterAt(2, ["pretrain", *TINY_CLI, f"output_dir={tmp_path}", "name=r"])
    summary = pretrain(tiny_run(tmp_path, "r"), [second])
    err = capsys.readouterr().err
    assert second.code == 2
    line = [x for x in err.splitlines() if x.startswith("hexssl: error:")]
    assert len(line) == 1 and f"pid {os.getpid()}" in line[0] and "in use by" in line[0]
    assert summary["steps"] == 4 and checkpoint(tmp_path / "r")["global_step"] == 4
    assert not (tmp_path / "r" / LOCK_NAME).exists()  # released at the end


def test_resume_of_a_live_run_is_refused(tmp_path, capsys):
    second = SecondWriterAt(2, ["resume", str(tmp_path / "r")])
    pretrain(tiny_run(tmp_path, "r"), [second])
    assert second.code == 2
    assert f"pid {os.getpid()}" in capsys.readouterr().err


HOLDER = """
import sys, time
from pathlib import Path
from hexssl.run.lock import hold_run_lock
with hold_run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.02)
"""


def test_another_process_holding_the_folder_is_named(tmp_path, capsys):
    run, release = tmp_path / "r", tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), str(release)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        info = lock_holder(run)
        assert info is not None and info.pid == child.pid
        code = main(["pretrain", *TINY_CLI, f"output_dir={tmp_path}", "name=r"])
        assert code == 2
        assert f"pid {child.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        release.touch()
        child.wait(timeout=60)
    assert lock_holder(run) is None  # the kernel's lock went with the process


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    stale = {"pid": dead_pid(), "host": os.uname().nodename, "started": time.time() - 60,
             "command": "hexssl pretrain (killed)", "slurm_job": None}  # fmt: skip
    (run / LOCK_NAME).write_text(json.dumps(stale))
    assert lock_holder(run) is None  # nobody holds its flock: stale
    summary = pretrain(tiny_run(tmp_path, "r"))
    assert summary["steps"] == 4
    err = capsys.readouterr().err
    assert f"taking over the lock left by pid {stale['pid']}" in err


def test_in_process_second_holder_is_refused_and_a_refused_run_leaves_no_folder(tmp_path):
    run = tmp_path / "fresh"
    with hold_run_lock(run) as me:
        assert me.pid == os.getpid()
        with pytest.raises(RunLockedError, match="one writer per run folder"), hold_run_lock(run):
            pass
    assert not run.exists()  # created by the lock, nothing written: removed again


def test_a_config_error_after_the_lock_leaves_nothing(tmp_path):
    code = main(
        ["pretrain", *TINY_CLI, f"output_dir={tmp_path}", "name=bad", "data.batch_size=999"]
    )
    assert code == 2
    assert not (tmp_path / "bad").exists()
