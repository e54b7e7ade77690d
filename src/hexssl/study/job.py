"""One run of a study as one process: ``python -m hexssl.study.job RESULTS_DIR ARM SEED``.

Reads the resolved protocol fixed in ``RESULTS_DIR`` (and the runs dir recorded beside
it), trains the run or resumes it from its ``last.ckpt`` through ``pretrain`` (which
holds the run lock), evaluates it and writes ``RESULTS_DIR/<arm>-s<seed>.json``
atomically, with its weights and curves. A run whose JSON exists is not touched.
Executors (:mod:`hexssl.study.executors`) start exactly this, once per run.

Exit status:

* 0: done (the result is written, or was already there);
* ``128 + signal``: stopped by SIGTERM / SIGUSR1 after saving ``last.ckpt`` (with
  ``trainer.requeue=true`` inside SLURM, SIGUSR1 also requeued the job): rerun to resume;
* 2: bad input (no study in RESULTS_DIR, an unknown arm or seed, a config the run
  refuses); one ``hexssl: error:`` line;
* 75: another live process holds the run's lock (it is being trained elsewhere);
* anything else: the run failed (the traceback is in the output).

A failure (2 for the run's own input, or any other failure) is recorded in
``RESULTS_DIR/logs/<arm>-s<seed>.failed.json`` for ``hexssl study --status``; a new
attempt removes the record first. Started with ``HEXSSL_STUDY_PARENT=<pid>`` (the local
executor does), the job stops as on SIGTERM, saving first, when that process is gone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from hexssl.errors import ConfigError, NonFiniteLossError, PreemptedError
from hexssl.run.lock import RunLockedError, first_rank_lock
from hexssl.study.executors.base import EXIT_BUSY
from hexssl.study.folder import StudyFolder
from hexssl.study.protocol import check_arm, check_seeds, run_name
from hexssl.study.runner import Study, run_one

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
PARENT_ENV = "HEXSSL_STUDY_PARENT"


def stop_with_parent(parent: int, period: float = 1.0) -> threading.Thread:
    """Watch (daemon thread) that ``parent`` is still this process's parent; when it is
    gone, stop this run as a SIGTERM would (save ``last.ckpt``, exit 143)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        print(f"[study] process {parent} that started this run is gone; stopping "
              "after saving", flush=True)  # fmt: skip
        signal.raise_signal(signal.SIGTERM)  # this process only: pretrain's handler

    thread = threading.Thread(target=watch, name="stop-with-parent", daemon=True)
    thread.start()
    return thread


def _error(folder: StudyFolder, arm: str, seed: int, code: int, reason: str) -> int:
    print(f"hexssl: error: {reason}", file=sys.stderr, flush=True)
    folder.record_failure(arm, seed, code, reason)
    return code


def run_job(results_dir: str | Path, arm: str, seed: int, requeue: bool = False) -> int:
    """Train or resume, evaluate and record one run; return the exit status above.

    ``requeue``: inside a SLURM job, SIGUSR1 also requeues it (``trainer.requeue``).
    """
    folder = StudyFolder(results_dir)
    try:
        protocol = folder.protocol()
        check_arm(protocol, arm)
        check_seeds([seed])
    except ConfigError as err:  # not this run's fault: nothing recorded
        print(f"hexssl: error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    if folder.result_path(arm, seed).is_file():
        print(f"[study] {run_name(arm, seed)}: done already ({folder.result_path(arm, seed)})")
        return EXIT_DONE
    study = Study(protocol, folder.runs_dir(), folder.path, [arm], [seed], [], requeue)
    return _attempt(folder, study, arm, seed)


def _attempt(folder: StudyFolder, study: Study, arm: str, seed: int) -> int:
    """One attempt at the run under the job's lock, every outcome mapped to its exit status."""
    try:
        with first_rank_lock(folder.job_lock_dir(arm, seed)):  # srun: the first rank's
            if folder.result_path(arm, seed).is_file():  # finished while we waited
                return EXIT_DONE
            folder.clear_failure(arm, seed)
            run_one(study, arm, seed)
    except PreemptedError as err:
        if not err.quiet:
            print(f"[hexssl] {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except RunLockedError as err:
        print(f"[study] {run_name(arm, seed)}: {err}", file=sys.stderr, flush=True)
        return EXIT_BUSY
    except (ConfigError, FileNotFoundError) as err:
        return _error(folder, arm, seed, EXIT_BAD_INPUT, str(err))
    except NonFiniteLossError as err:
        return _error(folder, arm, seed, 3, str(err))
    except Exception as err:  # a failed run is recorded, never silent
        traceback.print_exc()
        return _error(folder, arm, seed, EXIT_FAILED, f"{type(err).__name__}: {err}")
    return EXIT_DONE


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m hexssl.study.job RESULTS_DIR ARM SEED``."""
    ap = argparse.ArgumentParser(prog="python -m hexssl.study.job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("results_dir", help="a study's results folder (holds protocol.yaml)")
    ap.add_argument("arm", help="an arm of its protocol")
    ap.add_argument("seed", type=int, help="the seed")
    ap.add_argument("--requeue", action="store_true",
                    help="in a SLURM job: on SIGUSR1 save, then requeue the job")  # fmt: skip
    args = ap.parse_args(argv)
    if os.environ.get(PARENT_ENV, "").isdigit():
        stop_with_parent(int(os.environ[PARENT_ENV]))
    return run_job(args.results_dir, args.arm, args.seed, args.requeue)


if __name__ == "__main__":
    sys.exit(main())
