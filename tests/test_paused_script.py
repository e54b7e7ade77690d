"""benchmarks/paused.sh: other matching processes stop while the command runs, then resume."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paused.sh"


def _state(pid: int) -> str:
    """One-letter process state from /proc (R, S, T, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_paused_stops_matching_processes_and_resumes_them(tmp_path: Path) -> None:
    marker = f"hexssl-paused-test-{uuid.uuid4().hex}"
    other = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"])
    try:
        time.sleep(0.2)
        probe = f"print(open('/proc/{other.pid}/stat').read().rsplit(')', 1)[1].split()[0])"
        done = subprocess.run(
            ["bash", str(SCRIPT), "-p", marker, sys.executable, "-c", probe],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "T"  # stopped while the command ran
        assert _state(other.pid) != "T"  # and running again after it
    finally:
        other.kill()
        other.wait()


def test_paused_passes_the_exit_code_on_and_resumes_after_a_failure() -> None:
    marker = f"hexssl-paused-test-{uuid.uuid4().hex}"
    other = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"])
    try:
        time.sleep(0.2)
        done = subprocess.run(["bash", str(SCRIPT), "-p", marker, "false"], timeout=60)
        assert done.returncode == 1
        assert _state(other.pid) != "T"
    finally:
        other.kill()
        other.wait()


def test_paused_without_a_command_says_how_to_use_it() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "usage" in done.stderr
