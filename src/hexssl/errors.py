"""The exceptions that more than one part of hexssl raises or catches.

They live here, at the bottom of the import graph, so that a module needs no other
module (the config schema, the method base class) only to name an error.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key or value is invalid; the message names it and the fix."""


class DataError(ConfigError):
    """The data on disk cannot be read as configured; the message names the file and the fix.

    A :class:`ConfigError`, so the CLI reports it in one line (exit 2).
    """


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the run stops without saving that state."""


class PreemptedError(Exception):
    """The run stopped on a signal after saving; ``exit_code`` is ``128 + signal``.

    Raised by :mod:`hexssl.run.preempt`; ``hexssl`` prints the message and exits with
    ``exit_code`` (143 for SIGTERM, 138 for SIGUSR1), so schedulers see an unfinished run.
    ``quiet`` marks the error of a DDP process other than the first: it exits with the same
    status without repeating the first process's line.
    """

    def __init__(self, message: str, signum: int, quiet: bool = False) -> None:
        super().__init__(message)
        self.signum, self.quiet = signum, quiet
        self.exit_code = 128 + signum
