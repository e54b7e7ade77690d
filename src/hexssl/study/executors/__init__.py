"""Executors of a study's runs, by name (``hexssl study --executor NAME``).

The interface and what an executor must do: :mod:`hexssl.study.executors.base`.
"""

from hexssl.study.executors.base import EXIT_BUSY, Executor, RunKey, RunRecord
from hexssl.study.executors.local import LocalExecutor
from hexssl.study.executors.slurm import SlurmExecutor

EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "slurm": SlurmExecutor}

__all__ = ["EXECUTORS", "EXIT_BUSY", "Executor", "LocalExecutor", "RunKey", "RunRecord",
           "SlurmExecutor"]  # fmt: skip
