"""Whether a SLURM cluster is reachable, for the tests marked ``slurm``.

Start one with ``eval "$(scripts/slurm-cluster.sh start)"`` (README, Development). Without
one these tests skip with the reason; under CI (``CI=true``, where ``.ci/run`` starts the
cluster) a missing cluster fails them instead, so they can never pass by skipping.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

START = 'eval "$(scripts/slurm-cluster.sh start)"'
UP_STATES = {"idle", "mix", "alloc"}  # sinfo's %t for a node that takes jobs


@functools.cache
def unreachable() -> str | None:
    """Why no cluster is reachable (one line), or None when ``sinfo`` sees an up node."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        return f"no SLURM cluster: SLURM_CONF is not set (start one: {START})"
    if not Path(conf).is_file():
        return f"no SLURM cluster: SLURM_CONF={conf} does not exist (start one: {START})"
    if shutil.which("sinfo") is None:
        return "no SLURM cluster: sinfo is not on PATH (scripts/slurm-cluster.sh install)"
    try:
        res = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return f"no SLURM cluster: sinfo did not answer in 20 s (SLURM_CONF={conf})"
    states = res.stdout.split()
    if res.returncode != 0 or not any(s.rstrip("*~#") in UP_STATES for s in states):
        said = (res.stderr.strip() or " ".join(states) or "nothing").splitlines()[0]
        return f"no SLURM cluster up at SLURM_CONF={conf}: sinfo said {said!r}"
    return None


def require_cluster(in_ci: bool) -> str | None:
    """The skip reason for a ``slurm`` test here, or None when it may run.

    Raises:
        RuntimeError: under CI, when no cluster is reachable (a failure, never a skip).
    """
    why = unreachable()
    if why and in_ci:
        raise RuntimeError(f"CI=true but {why}; .ci/run starts the cluster")
    return why
