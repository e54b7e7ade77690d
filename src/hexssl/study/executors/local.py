"""The local executor: N job processes at once on this machine.

Each run is one ``python -m hexssl.study.job`` process (:mod:`hexssl.study.job`) with its
output appended to ``<results>/logs/<arm>-s<seed>.log``. The CPU threads are split
evenly between the workers (``OMP_NUM_THREADS``), and with several GPUs each worker gets
one (``CUDA_VISIBLE_DEVICES``, round robin over the GPUs this process may use).

Stopping: the jobs run in their own sessions, so a Ctrl-C in the terminal reaches only
``hexssl study``, which forwards SIGTERM to the jobs it started; each saves
``last.ckpt`` at its next step and exits ``128 + 15``, and the study exits
``128 + signal``. Rerunning the study resumes those runs. If ``hexssl study`` dies
without that chance (SIGKILL), each job notices that its parent is gone and stops the
same way (:func:`hexssl.study.job.stop_with_parent`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from hexssl.study.executors.base import EXIT_BUSY, Executor, RunKey, RunRecord, refuse_options
from hexssl.study.folder import StudyFolder
from hexssl.study.protocol import run_name

POLL_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Slot:
    """One worker: its environment (threads, GPU) and the run it is training."""

    env: dict[str, str]
    run: RunKey | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_envs(workers: int, threads: int, gpus: Sequence[str]) -> list[dict[str, str]]:
    """Per worker: its share of ``threads`` and, with several GPUs, one of them.

    Example:
        >>> [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(3, 12, ["0", "1"])]
        ['0', '1', '0']
        >>> worker_envs(2, 5, [])[0]
        {'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': '2'}
    """
    share = str(max(1, threads // workers))
    envs = []
    for i in range(workers):
        env = {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share}
        if len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        envs.append(env)
    return envs


class LocalExecutor(Executor):
    """Runs the study's jobs as ``workers`` processes at once on this machine."""

    name = "local"

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        refuse_options(self.name, options or {})
        super().__init__(options)
        self.stop_signal: int | None = None
        self.slots: list[Slot] = []

    def check(self, folder: StudyFolder) -> None:
        """Nothing to check: this machine runs the jobs."""

    def records(self, folder: StudyFolder, runs: Sequence[RunKey]) -> dict[RunKey, RunRecord]:
        """Nothing beyond the folder: running = a live run lock, failed = a failure record."""
        return {}

    def launch(self, folder: StudyFolder, runs: Sequence[RunKey], workers: int) -> int:
        """Run ``runs`` in order, ``workers`` at once; return when all have ended."""
        import torch

        envs = worker_envs(workers, torch.get_num_threads(), visible_gpus())
        self.slots = [Slot({**os.environ, **env, "HEXSSL_STUDY_PARENT": str(os.getpid())})
                      for env in envs]  # fmt: skip
        queue, failed = list(runs), 0
        with self._forwarding_stop_signals():
            while (queue and self.stop_signal is None) or any(s.proc for s in self.slots):
                for slot in self.slots:
                    failed += self._reap(folder, slot)
                    if slot.proc is None and queue and self.stop_signal is None:
                        self._start(folder, slot, queue.pop(0))
                time.sleep(POLL_SECONDS)
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        return 1 if failed else 0

    def _start(self, folder: StudyFolder, slot: Slot, run: RunKey) -> None:
        log_path = folder.log_path(*run)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        slot.log = log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        slot.log.write(f"[study] {stamp}: started by hexssl study (local)\n".encode())
        slot.log.flush()
        print(f"[study] {run_name(*run)}: started (log {log_path})", flush=True)
        slot.run = run
        slot.proc = subprocess.Popen(
            folder.job_command(*run), stdout=slot.log, stderr=subprocess.STDOUT,
            env=slot.env, start_new_session=True,  # Ctrl-C reaches us only; we forward
        )  # fmt: skip

    def _reap(self, folder: StudyFolder, slot: Slot) -> int:
        """Collect the slot's finished job, if any; 1 when it failed."""
        if slot.proc is None or slot.proc.poll() is None or slot.run is None:
            return 0
        code, run = slot.proc.returncode, slot.run
        if slot.log is not None:
            slot.log.close()
        slot.proc, slot.run, slot.log = None, None, None
        name, log = run_name(*run), folder.log_path(*run)
        if code == 0:
            print(f"[study] {name}: done", flush=True)
        elif code == EXIT_BUSY:
            print(f"[study] {name}: another process trains it; left to it", flush=True)
        elif code > 128:
            print(f"[study] {name}: stopped by {signal.Signals(code - 128).name} after "
                  "saving; resumes on the next run of the study", flush=True)  # fmt: skip
        else:
            if folder.failure(*run) is None:  # died before it could say why
                why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
                tail = log_tail(log)
                folder.record_failure(*run, code, f"the job process ended ({why}): {tail}")
            print(f"[study] {name}: FAILED (exit {code}); see {log}", flush=True)
            return 1
        return 0

    @contextmanager
    def _forwarding_stop_signals(self) -> Iterator[None]:
        """While the pool runs: SIGINT / SIGTERM stop new starts and reach our jobs."""

        def stop(signum: int, frame: FrameType | None) -> None:
            first = self.stop_signal is None
            self.stop_signal = self.stop_signal or signum
            if first:
                print(f"[study] {signal.Signals(signum).name}: stopping the running jobs "
                      "(each saves first); no new ones start", flush=True)  # fmt: skip
            for slot in self.slots:  # processes this executor started, still running
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(signal.SIGTERM)

        before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            signal.signal(sig, stop)
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def log_tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log (for a failure's one-line reason)."""
    if not path.is_file():
        return ""
    text = path.read_bytes()[-8192:].decode(errors="replace")
    return " | ".join([line for line in text.splitlines() if line.strip()][-lines:])
