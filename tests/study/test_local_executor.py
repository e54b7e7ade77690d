"""The local executor's pool on its own: a stop signal with runs still queued.

The jobs are short Python processes standing in for ``hexssl.study.job`` (they exit
``128 + 15`` on SIGTERM, as a training job does after saving), so the test is about the
pool: it must forward the signal, start nothing new, and return with runs still queued.
The pool runs in a child process under a wall-clock limit, so a pool that never returns
fails the test in a minute instead of holding the suite.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.subproc import run_limited

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import os, signal, sys, threading, time
from pathlib import Path
from hexssl.study.executors.local import LocalExecutor
from hexssl.study.folder import StudyFolder

JOB = ("import signal, sys, time\\n"
       "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\\n"
       "print('job up', flush=True)\\n"
       "time.sleep(60)\\n")

class SleepingJobs(StudyFolder):
    def job_command(self, arm, seed):
        return [sys.executable, "-c", JOB]

folder = SleepingJobs(Path(sys.argv[1]))
log = folder.log_path("a", 0)

def stop_once_started():
    while "job up" not in (log.read_text() if log.is_file() else ""):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)  # this process: the study

threading.Thread(target=stop_once_started, daemon=True).start()
code = LocalExecutor().launch(folder, [("a", 0), ("b", 0), ("c", 0)], workers=1)
print("launch returned", code, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
"""


def test_a_stop_signal_with_runs_still_queued_returns_and_starts_nothing_new(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = run_limited([sys.executable, "-c", DRIVER, str(tmp_path)],
                      env=env, wall_seconds=60)  # fmt: skip
    assert f"launch returned {128 + signal.SIGTERM} True" in res.stdout, res.stdout + res.stderr
    assert "b-s0: started" not in res.stdout and "c-s0: started" not in res.stdout
    assert not (tmp_path / "logs" / "b-s0.log").exists()
