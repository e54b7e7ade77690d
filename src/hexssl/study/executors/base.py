"""Where a study's runs execute: the executor interface.

A study plans runs, an executor places them, and the results folder is the single
source of truth (STYLE.md). ``hexssl study`` resolves and fixes the protocol in the
results folder (:func:`hexssl.study.folder.fix_protocol`), works out which (arm, seed)
runs are neither done nor already running or queued, and hands exactly those to
:meth:`Executor.launch`. Status (``hexssl study --status``) reads the results folder and
the run folders, then asks :meth:`Executor.records` for what only the executor knows.

What an executor must do:

* **Run each run as one process** (or one ``srun`` step of N processes for multi-device
  runs): ``StudyFolder.job_command(arm, seed)``, i.e.
  ``python -m hexssl.study.job RESULTS_DIR ARM SEED`` (:mod:`hexssl.study.job`), in the
  working directory ``hexssl study`` was started from (relative data roots resolve
  there). The job reads the frozen protocol, trains or resumes through ``pretrain``
  (which holds the run lock), evaluates and writes the result JSON atomically. It never
  needs arguments beyond these three.
* **Send its output to** ``StudyFolder.log_path(arm, seed)`` (append: a resumed run keeps
  its earlier sessions' lines).
* **Read its exit status** (:mod:`hexssl.study.job`): 0 done (result written, or already
  there); ``128 + signal`` preempted (``last.ckpt`` saved; SIGUSR1 with
  ``trainer.requeue=true`` inside SLURM has already run ``scontrol requeue``): the run
  is resumable, not failed; 2 bad input; 75 (:data:`EXIT_BUSY`) another process holds
  the run (its live lock): neither failed nor done; anything else, or death by a signal
  without that status: failed. The job records its own failures
  (``StudyFolder.record_failure``); an executor records those the job could not (killed,
  a node lost) with the exit code and a one-line reason, unless a record exists.
* **Never signal a process it did not start**; it may forward a stop signal to a job
  process it started (so that the job saves and exits ``128 + signal``).
* **Keep its own records in the results folder** (e.g. SLURM job ids under
  ``<results>/slurm/``), never only in memory: the submitting process may exit, and
  ``--status`` in a later process must see queued and running jobs.

Example:
    >>> from hexssl.study.executors import EXECUTORS
    >>> sorted(EXECUTORS)[:1], EXECUTORS["local"].name
    (['local'], 'local')
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hexssl.errors import ConfigError
from hexssl.study.folder import StudyFolder

RunKey = tuple[str, int]  # (arm, seed)
EXIT_BUSY = 75  # the job found the run locked by another live process (EX_TEMPFAIL)


@dataclass(frozen=True)
class RunRecord:
    """What an executor knows about one unfinished run (for ``--status``).

    ``state``: ``queued`` (waiting to start, e.g. a pending SLURM job), ``running``
    or ``failed``; ``detail``: a few words shown in the table (``slurm job 12
    PENDING``); ``log``: the file to read when it failed.
    """

    state: str
    detail: str = ""
    log: Path | None = None

    def __post_init__(self) -> None:
        if self.state not in ("queued", "running", "failed"):
            raise ValueError(f"RunRecord.state must be queued|running|failed, not {self.state!r}")


class Executor(ABC):
    """Places a study's runs: a local process pool, SLURM jobs (see the module docstring).

    Args:
        options: the ``--slurm key=value`` settings (or another executor's), validated by
            the executor; one that takes none refuses any.
    """

    name: ClassVar[str]

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def check(self, folder: StudyFolder) -> None:
        """Refuse what cannot work (a missing program, a bad option) with ConfigError.

        Called before anything is written or placed, also for ``--dry-run``.
        """

    @abstractmethod
    def launch(self, folder: StudyFolder, runs: Sequence[RunKey], workers: int) -> int:
        """Place these runs (none done, running or queued) and return an exit status.

        ``workers``: runs at once (local processes; a SLURM array's ``%`` limit). A local
        executor returns when every run has ended: 0 all done, ``128 + signal`` when a
        stop signal ended the study (runs resumable), 1 when any run failed. One that
        submits to a scheduler returns 0 once every run is submitted.
        """

    @abstractmethod
    def records(self, folder: StudyFolder, runs: Sequence[RunKey]) -> dict[RunKey, RunRecord]:
        """What this executor knows about these unfinished runs (others: leave out).

        Read from its records in the results folder and, for a scheduler, the
        scheduler's own view of those jobs (``scontrol show job``); never from memory.
        """


def refuse_options(executor: str, options: Mapping[str, str]) -> None:
    """ConfigError when an executor that takes no options is given some."""
    if options:
        raise ConfigError(
            f"--executor {executor} takes no options, got {', '.join(options)} "
            "(--slurm KEY=VALUE is for --executor slurm)"
        )
