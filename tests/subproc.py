"""Subprocesses for tests, with a CPU-time and a wall-clock limit that fail fast.

A child that spins (a kernel that never returns) is stopped by ``RLIMIT_CPU``; one that
waits forever (a deadlock) by the wall-clock limit. Either way the test fails at once
with a message that names the limit and the command, instead of holding the suite until
CI's cap. The limits are per command and generous for the toy sizes the tests use.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

CPU_SECONDS = 90  # of CPU time, all threads together: ~45 s of wall time on 2 cores
WALL_SECONDS = 240  # a waiting child burns no CPU; this catches it


def _limit_cpu(seconds: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))

    return apply


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_limited(
    cmd: Sequence[str],
    *,
    cpu_seconds: int = CPU_SECONDS,
    wall_seconds: int = WALL_SECONDS,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` that cannot hang the suite.

    Fails the calling test (``pytest.fail``) when the child exceeds either limit.
    """
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    name = " ".join(str(c) for c in cmd)[:200]
    before = _children_cpu()
    try:
        res = subprocess.run(
            list(cmd), timeout=wall_seconds, preexec_fn=_limit_cpu(cpu_seconds), **kwargs
        )
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"")[-1500:]
        pytest.fail(f"hung: no exit after {wall_seconds} s of wall time: {name}\n{tail!r}")
    used = _children_cpu() - before
    if res.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU) or (
        res.returncode == -signal.SIGKILL and used >= cpu_seconds
    ):
        pytest.fail(
            f"stopped after {cpu_seconds} s of CPU time (a hang or a runaway): {name}\n"
            f"{(res.stderr or '')[-1500:]}"
        )
    return res
