"""The suite's own guards: a hanging subprocess fails fast, caches stay out of ``~``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from hexssl.data.base import cache_dir
from tests.subproc import run_limited


def test_a_spinning_subprocess_fails_on_its_cpu_limit() -> None:
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="s of CPU time"):
        run_limited([sys.executable, "-c", "while True: pass"], cpu_seconds=2)
    assert time.monotonic() - start < 30


def test_a_waiting_subprocess_fails_on_its_wall_limit() -> None:
    with pytest.raises(pytest.fail.Exception, match="hung: no exit after 2 s"):
        run_limited([sys.executable, "-c", "import time; time.sleep(60)"], wall_seconds=2)


def test_a_subprocess_that_kills_itself_is_not_mistaken_for_a_hang() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_limited([sys.executable, "-c", code]).returncode == -9


def test_the_dataset_cache_is_a_temporary_folder_not_the_users() -> None:
    assert not cache_dir().is_relative_to(Path.home() / ".cache")
