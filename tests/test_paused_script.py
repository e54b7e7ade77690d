"""benchmarks/paused.sh: other matching processes stop while the command runs, then resume."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paused.sh"


def _state(stat: str) -> str:
    """One-letter process state (R, S, T, ...) from the text of /proc/<pid>/stat."""
    return stat.rsplit(")", 1)[1].split()[0]


def _state_while_paused(pid: int, marker: str) -> str:
    """State of process ``pid`` as read by a command that paused.sh -p marker runs."""
    probe = f"print(open('/proc/{pid}/stat').read())"
    done = subprocess.run(
        ["bash", str(SCRIPT), "-p", marker, sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return _state(done.stdout)


@pytest.fixture
def sleeper() -> Iterator[tuple[int, str]]:
    """(pid, marker) of a sleeping python process whose command line holds the marker."""
    marker = f"hexssl-paused-test-{uuid.uuid4().hex}"
    other = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"])
    time.sleep(0.2)
    yield other.pid, marker
    other.kill()
    other.wait()


def test_paused_stops_matching_processes_and_resumes_them(sleeper: tuple[int, str]) -> None:
    pid, marker = sleeper
    assert _state_while_paused(pid, marker) == "T"  # stopped while the command ran
    assert _state(Path(f"/proc/{pid}/stat").read_text()) != "T"  # and running again after it


def test_paused_stops_the_children_of_a_match(tmp_path: Path) -> None:
    """A campaign's spawned workers do not name the script: they stop with their parent."""
    marker = f"hexssl-paused-test-{uuid.uuid4().hex}"
    pid_file = tmp_path / "child.pid"
    child = "import time; time.sleep(60)"
    parent_code = (
        "import subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); "
        f"time.sleep(60)  # {marker}"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the parent did not start its child"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        assert _state_while_paused(pid, marker) == "T"  # stopped although it does not match
        assert _state(Path(f"/proc/{pid}/stat").read_text()) != "T"
    finally:
        if pid_file.exists() and pid_file.read_text():
            subprocess.run(["kill", "-9", pid_file.read_text()], check=False)
        parent.kill()
        parent.wait()


def test_paused_passes_the_exit_code_on_and_resumes_after_a_failure(
    sleeper: tuple[int, str],
) -> None:
    pid, marker = sleeper
    done = subprocess.run(["bash", str(SCRIPT), "-p", marker, "false"], timeout=60)
    assert done.returncode == 1
    assert _state(Path(f"/proc/{pid}/stat").read_text()) != "T"


def test_paused_without_a_command_says_how_to_use_it() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "usage" in done.stderr
