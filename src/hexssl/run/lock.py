"""One writer per run folder: a lock that a live run holds on ``<run>/.hexssl.lock``.

Two ``hexssl pretrain`` processes aimed at one ``output_dir``/``name``, a ``resume``
started while the run still trains, or two study workers given the same run would
otherwise both write the same checkpoints and metrics. :func:`hold_run_lock` refuses the
second with one line that names the first (:class:`RunLockedError`, exit 2) and leaves
the first untouched.

The lock is an exclusive ``flock`` on the file, held for the life of the run: the kernel
releases it when the process ends, however it ends, so a lock left by a killed run is
never mistaken for a live one. The file's JSON says who holds it (pid, host, start time,
command, SLURM job); a holder that died without cleaning up is taken over with a note.
On a file system without ``flock`` (some network mounts) the JSON alone decides: a pid
on this host that no longer runs, or an earlier instance of this same SLURM job (a
requeued job), is stale; a holder on another host is trusted to be alive.

Example:
    >>> with hold_run_lock(Path("runs/simclr")):
    ...     pass  # train: a second process aimed at runs/simclr now gets RunLockedError
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from hexssl.errors import ConfigError

LOCK_NAME = ".hexssl.lock"
ATTEMPTS = 5  # a status reader holds a shared lock for microseconds: retry briefly
RETRY_SECONDS = 0.1


class RunLockedError(ConfigError):
    """Another live process holds the run folder; the message names it (exit 2)."""


@dataclass
class LockInfo:
    """Who holds (or last held) a run folder's lock."""

    pid: int
    host: str
    started: float  # time.time() when the lock was taken
    command: str
    slurm_job: str | None

    def describe(self) -> str:
        """``pid 123 on host n1 (SLURM job 77), since 2026-12-07 19:03:12 UTC: hexssl ...``."""
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        job = f" (SLURM job {self.slurm_job})" if self.slurm_job else ""
        return f"pid {self.pid} on host {self.host}{job}, since {since}: {self.command[:120]}"


def lock_path(run_dir: Path) -> Path:
    """``<run_dir>/.hexssl.lock``."""
    return Path(run_dir) / LOCK_NAME


def this_process() -> LockInfo:
    """The :class:`LockInfo` this process writes when it takes a lock."""
    job = os.environ.get("SLURM_JOB_ID")
    array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array[0] and array[1]:
        job = f"{array[0]}_{array[1]}"  # the id a user passes to scontrol / scancel
    return LockInfo(os.getpid(), socket.gethostname(), time.time(), " ".join(sys.argv), job)


def read_info(path: Path) -> LockInfo | None:
    """The JSON of a lock file, or None when it is missing, empty or unreadable."""
    try:
        data = json.loads(path.read_text())
        return LockInfo(**{k: data[k] for k in LockInfo.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _flock(f: IO[Any], mode: int) -> bool | None:
    """Try ``flock(mode | LOCK_NB)``: True taken, False held by another, None unsupported."""
    try:
        fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP: a file system without flock
        return None
    return True


def _pid_gone(info: LockInfo) -> bool:
    """Whether the holder surely no longer runs (read from /proc; nothing is signalled)."""
    me = this_process()
    if info.slurm_job and info.slurm_job == me.slurm_job and info.pid != me.pid:
        return True  # an earlier instance of this same (requeued) SLURM job
    if info.host != me.host or not Path("/proc").is_dir():
        return False  # another machine: cannot tell, so trust it
    return not Path(f"/proc/{info.pid}").exists()


def lock_holder(run_dir: Path) -> LockInfo | None:
    """The live holder of ``run_dir``'s lock, or None (no lock, or a stale one)."""
    path = lock_path(run_dir)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the probe
    except OSError:
        return None
    with f:
        taken = _flock(f, fcntl.LOCK_SH)
        if taken:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return None
    info = read_info(path)
    if taken is None:  # no flock here: judge by the JSON alone
        return None if info is None or _pid_gone(info) else info
    return info or LockInfo(-1, "?", 0.0, "(a process still writing its lock)", None)


def check_unlocked(run_dir: Path) -> None:
    """Raise :class:`RunLockedError` when a live process holds ``run_dir`` (a quick look
    before slower checks, so the user hears about the other process first)."""
    if launcher_rank_zero():
        info = lock_holder(run_dir)
        if info is not None:
            raise _refuse(run_dir, info)


def launcher_rank_zero() -> bool:
    """False in the processes that a DDP launcher (Lightning, torchrun, SLURM) started
    for ranks > 0: they re-run the command and must not write the run's files again."""
    names = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(n, "0") == "0" for n in names)


def first_rank_lock(run_dir: Path) -> AbstractContextManager[LockInfo | None]:
    """:func:`hold_run_lock` in the launch's first process; nothing in the others (one
    run of several DDP processes is one writer)."""
    return hold_run_lock(run_dir) if launcher_rank_zero() else nullcontext()


def _refuse(run_dir: Path, info: LockInfo | None) -> RunLockedError:
    who = info.describe() if info else "another process"
    return RunLockedError(
        f"run folder {run_dir} is in use by {who}; wait for it to finish, stop it, or pick "
        "another output_dir= or name= (one writer per run folder)"
    )


def _open_locked(path: Path) -> tuple[IO[Any], bool]:
    """Open ``path`` and take its exclusive flock; (file, flock supported).

    Retries when the file was replaced between open and lock (a holder released it and
    another process re-created it), so the lock held is always on the file at ``path``.
    """
    for attempt in range(ATTEMPTS):
        f = open(path, "a+b")  # noqa: SIM115 - held for the life of the run
        taken = _flock(f, fcntl.LOCK_EX)
        if taken is None:
            return f, False
        if taken and _same_file(f, path):
            return f, True
        f.close()
        if attempt < ATTEMPTS - 1:
            time.sleep(RETRY_SECONDS)
    raise _refuse(path.parent, read_info(path))


def _same_file(f: IO[Any], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def hold_run_lock(run_dir: Path, note: Any = None) -> Iterator[LockInfo]:
    """Hold ``run_dir``'s lock for the ``with`` block; refuse if a live process holds it.

    Creates ``run_dir`` if needed; on exit removes the lock file, and the folder too when
    this call created it and nothing else was written there (a run refused by a later
    check leaves nothing behind). ``note`` (default: print to stderr) receives the line
    about a stale lock taken over.

    Raises:
        RunLockedError: another live process holds the lock (names it; exit 2).
    """
    run_dir = Path(run_dir)
    created = _missing_folders(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    f, flock_ok = _open_locked(path)
    try:
        old = read_info(path)
        if old is not None and not flock_ok and not _pid_gone(old):
            raise _refuse(run_dir, old)
        if old is not None:
            say = note or (lambda text: print(text, file=sys.stderr, flush=True))
            say(f"[hexssl] {run_dir}: taking over the lock left by {old.describe()} (gone)")
        me = this_process()
        f.seek(0)
        f.truncate()
        f.write(json.dumps(asdict(me)).encode())
        f.flush()
        os.fsync(f.fileno())
        try:
            yield me
        finally:
            _release(run_dir, path, f, created)
    finally:
        f.close()


def _missing_folders(run_dir: Path) -> list[Path]:
    """``run_dir`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _release(run_dir: Path, path: Path, f: IO[Any], created: list[Path]) -> None:
    """Remove the lock file (still holding the flock), and the empty folders we created."""
    if _same_file(f, path):
        path.unlink(missing_ok=True)
    for folder in created:  # innermost first; a folder that holds anything stays
        try:
            folder.rmdir()
        except OSError:
            break
