"""Exceptions the command line turns into exit statuses, importable without torch."""

from __future__ import annotations


class PreemptedError(Exception):
    """The run stopped on a signal after saving; ``exit_code`` is ``128 + signal``.

    Raised by :mod:`hexssl.preempt`; ``hexssl`` prints the message and exits with
    ``exit_code`` (143 for SIGTERM, 138 for SIGUSR1), so schedulers see an unfinished run.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
