"""Stopping cleanly when a scheduler ends the run: SIGTERM and SIGUSR1.

SLURM sends SIGTERM at the time limit (and on ``scancel``), then SIGKILL after its grace
period (``KillWait``, 30 s by default); with ``#SBATCH --signal=USR1@90`` it sends SIGUSR1
90 s before. Preemptible cloud instances send SIGTERM. Without a handler, Python dies at
once on either signal, and Lightning's own SIGTERM handling exits with status 0 after
the last periodic checkpoint, so up to ``trainer.checkpoint_every_n_steps - 1`` steps
were lost and the exit status said success.

Here, as in Lightning's SLURM support and solo-learn, a signal is only recorded; at the
next optimiser-step boundary the run saves ``last.ckpt``, says so in one line and stops
with :class:`PreemptedError`, whose exit status is ``128 + signal`` (143 for SIGTERM,
138 for SIGUSR1: what a shell reports for a process the signal ended), so schedulers and
scripts see an unfinished run. ``hexssl resume`` continues from that checkpoint exactly.

With ``trainer.requeue=true`` inside a SLURM job, SIGUSR1 (the advance warning, never
SIGTERM, which ``scancel`` also sends) also puts the job back in the queue with
``scontrol requeue``; its script should then pass ``resume=auto``.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from hexssl.errors import PreemptedError
from hexssl.run.checkpoints import CKPT_DIR, RunCheckpoints

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REQUEUE_SIGNAL = signal.SIGUSR1
DDP_AGREE_EVERY = 8  # steps between the processes' agreements on a stop (a host sync each)


class StopSignals:
    """Records SIGTERM / SIGUSR1 instead of dying; :meth:`installed` sets the handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:  # the first signal decides (a later SIGTERM is expected)
            self.signum = signum

    def install(self) -> None:
        """Make :meth:`_record` the handler (main thread only, where Python allows it)."""
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._record)

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """The handlers while the block runs; the previous ones are restored after it."""
        main = threading.current_thread() is threading.main_thread()
        before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
        self.install()
        try:
            yield self
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGTERM).name


class Preemption(Callback):
    """At the first step boundary after a stop signal: save ``last.ckpt``, then stop.

    Lightning installs its own SIGTERM handler when ``fit`` starts (it would stop at its
    own points, mid-validation included, and exit 0); :meth:`on_train_start` puts ours
    back. Under DDP the ranks agree every :data:`DDP_AGREE_EVERY` steps whether any of them
    was signalled, so they all save and stop at the same step.
    """

    def __init__(self, signals: StopSignals, run_dir: Path, requeue: bool = False) -> None:
        self.signals, self.run_dir, self.requeue = signals, run_dir, requeue
        self.last_step = -1
        self.saved: str | None = None  # what was saved at the stop step, until it stops

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.signals.install()
        self.last_step = trainer.global_step
        if self._signalled(trainer):
            raise self.stop_error("before the first step; nothing new to save", trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.last_step:
            return  # mid gradient accumulation: not a step boundary
        self.last_step = trainer.global_step
        if self.saved is None and self._signalled(trainer, DDP_AGREE_EVERY):
            self.saved = self._save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # Lightning logs a step's metrics after its on_train_batch_end hooks; stopping here,
        # before the next batch, keeps the saved step's row in metrics.csv.
        if self.saved is not None:
            for logger in trainer.loggers:
                logger.save()
            raise self.stop_error(self.saved, trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # a signal during the epoch's validation; the epoch-end checkpoint is written
        # (RunCheckpoints runs before this callback). The last epoch just finishes.
        if trainer.current_epoch + 1 < (trainer.max_epochs or 0) and self._signalled(trainer):
            raise self.stop_error(self._save(trainer), trainer)

    def _signalled(self, trainer: L.Trainer, every: int = 1) -> bool:
        """Whether any process was signalled; under DDP asked only every ``every`` steps.

        Agreeing is a collective whose answer the CPU must read (a host sync), so the
        step-boundary check asks only every :data:`DDP_AGREE_EVERY` steps: a stop then
        waits at most that many steps, well inside SLURM's warning and kill delays.
        """
        if trainer.world_size > 1:
            if trainer.global_step % every:
                return False
            # one collective: the largest signal number any process got (0: none), so every
            # process reports the same signal (SIGTERM over SIGUSR1) and rank 0 requeues on
            # SIGUSR1 even when only another process received it
            mine = torch.tensor(self.signals.signum or 0, device=trainer.strategy.root_device)
            agreed = int(trainer.strategy.reduce(mine, reduce_op="max"))
            if agreed:
                self.signals.signum = agreed
        return self.signals.signum is not None

    def _save(self, trainer: L.Trainer) -> str:
        ckpts = next(c for c in trainer.callbacks if isinstance(c, RunCheckpoints))  # type: ignore[attr-defined]
        if ckpts.saved_step != trainer.global_step:
            ckpts.save(trainer)
        return f"saved step {trainer.global_step} to {ckpts.dir / 'last.ckpt'}"

    def stop_error(self, what: str, trainer: L.Trainer | None = None) -> PreemptedError:
        """The error that stops the run: which signal, ``what`` was saved, what to do next."""
        signum = self.signals.signum or int(signal.SIGTERM)
        then = f"continue with: hexssl resume {self.run_dir}"
        if not (self.run_dir / CKPT_DIR / "last.ckpt").is_file():
            then = "nothing was trained: run the same command again"
        first = trainer is None or trainer.is_global_zero
        requeued = first and self.requeue and signum == REQUEUE_SIGNAL
        if self.requeue and signum == REQUEUE_SIGNAL:  # once, by the first process
            then = requeue_job() if first else "requeued"
        text = f"stopped by {self.signals.name}: {what}; {then}"
        if requeued:
            # SLURM ends a requeued job at once (SIGTERM), likely before the caller prints
            # this line, after our handlers are gone: say it now, and nothing later
            print(f"[hexssl] {text}", file=sys.stderr, flush=True)
        return PreemptedError(text, signum, quiet=requeued or not first)


def requeue_job() -> str:
    """``scontrol requeue`` this SLURM job; what happened, as the end of a sentence."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    job = os.environ.get("SLURM_ARRAY_JOB_ID") if task else os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not requeued: not inside a SLURM job (no SLURM_JOB_ID)"
    job_id = f"{job}_{task}" if task else job
    try:
        done = subprocess.run(
            ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"requeue of SLURM job {job_id} failed ({err})"
    if done.returncode != 0:
        return f"requeue of SLURM job {job_id} failed: {done.stderr.strip()[:200]}"
    return f"requeued SLURM job {job_id}; it continues with resume=auto"


Fit = TypeVar("Fit", bound=Callable[..., dict[str, Any]])


def preemptible(fit: Fit) -> Fit:
    """Run ``fit(cfg, ckpt, extra_callbacks, changes)`` with the stop signals recorded and
    a :class:`Preemption` callback first among the extra callbacks.

    Raises:
        PreemptedError: a signal arrived; the message says what was saved.
    """

    @functools.wraps(fit)
    def run(cfg: Any, ckpt: Any, extra_callbacks: Any = None, changes: Any = None) -> Any:
        with StopSignals().installed() as signals:
            stop = Preemption(signals, cfg.run_dir, cfg.trainer.requeue)
            try:
                return fit(cfg, ckpt, [stop, *(extra_callbacks or [])], changes)
            except SIGTERMException:  # Lightning's, before our handler was back
                raise stop.stop_error("before the first step; nothing new to save") from None

    return run  # type: ignore[return-value]
