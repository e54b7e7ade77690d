"""Issue 25.2: SIGTERM / SIGUSR1 (a scheduler's time limit or advance warning, a preempted
instance) saves at the next step boundary, says so, exits non-zero; resume is exact.

The in-process tests send the signal to the test's own process from a callback, so the
step it lands on is known; the slow test sends it to a real ``hexssl pretrain``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from hexssl.cli import main
from hexssl.config import load_config
from hexssl.errors import PreemptedError
from hexssl.run.checkpoints import epochs_done
from hexssl.run.train import pretrain, resume
from tests.faults.helpers import assert_same_state, checkpoint, step_losses, tiny_run
from tests.subproc import run_limited

from .tiny import tiny

RARE = "trainer.checkpoint_every_n_steps=1000"  # the issue: no periodic checkpoint in reach


class SignalAt(Callback):
    """Send ``sig`` to this process at the end of global step ``step`` (or when the
    validation of epoch ``val_epoch`` starts)."""

    def __init__(self, sig: int, step: int = -1, val_epoch: int = -1) -> None:
        self.sig, self.step, self.val_epoch = sig, step, val_epoch

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)

    def on_validation_epoch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.current_epoch == self.val_epoch and not trainer.sanity_checking:
            os.kill(os.getpid(), self.sig)


FOUR_STEPS = "data.options={n_super: 2, n_per_super: 2, n_per_class: 16, image_size: 16}"


def test_sigterm_saves_at_the_next_step_and_resume_is_exact(tmp_path):
    pretrain(tiny_run(tmp_path, "ref", "moco_v2", RARE, FOUR_STEPS))
    cut = tiny_run(tmp_path, "cut", "moco_v2", RARE, FOUR_STEPS)
    with pytest.raises(PreemptedError) as info:
        pretrain(cut, [SignalAt(signal.SIGTERM, step=1)])
    err = info.value
    assert err.exit_code == 143
    # sent after step 1's boundary check: saved at the next boundary, mid-epoch
    assert checkpoint(tmp_path / "cut")["global_step"] == 2
    assert "stopped by SIGTERM: saved step 2" in str(err)
    assert f"hexssl resume {tmp_path / 'cut'}" in str(err)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    resume(tmp_path / "cut")
    assert_same_state(checkpoint(tmp_path / "ref"), checkpoint(tmp_path / "cut"))
    ref_losses, cut_losses = step_losses(tmp_path / "ref"), step_losses(tmp_path / "cut")
    assert list(cut_losses) == list(ref_losses) == list(range(8))  # the stop step's row kept
    assert cut_losses == pytest.approx(ref_losses)


def test_a_signal_during_validation_stops_after_the_epoch_end_checkpoint(tmp_path):
    with pytest.raises(PreemptedError) as info:
        pretrain(tiny_run(tmp_path, "v", "simclr", RARE), [SignalAt(signal.SIGUSR1, val_epoch=0)])
    assert info.value.exit_code == 128 + signal.SIGUSR1
    ckpt = checkpoint(tmp_path / "v")
    assert (ckpt["global_step"], epochs_done(ckpt)) == (2, 1)  # epoch 0 complete, validated


def test_a_signal_in_the_last_epoch_lets_the_run_finish(tmp_path):
    summary = pretrain(
        tiny_run(tmp_path, "f", "simclr", RARE), [SignalAt(signal.SIGTERM, val_epoch=1)]
    )
    assert summary["steps"] == 4 and (tmp_path / "f/summary.json").is_file()


def test_sigusr1_with_requeue_runs_scontrol_requeue(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    cfg = tiny_run(tmp_path, "rq", "simclr", RARE, "trainer.requeue=true")
    with pytest.raises(PreemptedError) as info:
        pretrain(cfg, [SignalAt(signal.SIGUSR1, step=1)])
    assert log.read_text() == "requeue 4242\n"
    assert "requeued SLURM job 4242" in str(info.value)
    # SIGTERM is also what scancel sends: it never requeues
    log.unlink()
    with pytest.raises(PreemptedError):
        pretrain(tiny_run(tmp_path, "rq2", "simclr", RARE, "trainer.requeue=true"),
                 [SignalAt(signal.SIGTERM, step=1)])  # fmt: skip
    assert not log.exists()


# ------------------------------------------------------------------ a real process
DRIVER = """
import os, signal, subprocess, sys, time
sig, metrics, rows, cmd = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
child = subprocess.Popen(cmd)
deadline = time.monotonic() + 180
while child.poll() is None and time.monotonic() < deadline:
    done = len(open(metrics).read().splitlines()) - 1 if os.path.exists(metrics) else 0
    if done >= rows:
        child.send_signal(sig)
        break
    time.sleep(0.02)
sys.exit(child.wait(timeout=180))
"""
PRESET = "src/hexssl/configs/simclr-synthetic-demo.yaml"
SETTINGS = [
    "data.options={n_per_class: 24, n_super: 2, n_per_super: 2, image_size: 16}",  # 6 steps
    "trainer.max_epochs=2",
    "eval.purity_every_n_steps=0",
    "eval.knn_at_end=false",
    RARE,
]


def hexssl(*args: str) -> Any:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return run_limited([sys.executable, "-m", "hexssl.cli", *args], env=env)


@pytest.mark.slow
def test_sigterm_to_a_real_pretrain_process_then_resume_is_exact(tmp_path):
    assert hexssl("pretrain", PRESET, *tiny(tmp_path, "ref", *SETTINGS)).returncode == 0
    cut = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "hexssl.cli",
        "pretrain",
        PRESET,
        *tiny(tmp_path, "cut", *SETTINGS),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    args = [str(int(signal.SIGTERM)), str(cut / "metrics.csv"), "2"]
    res = run_limited([sys.executable, "-c", DRIVER, *args, *cmd], env=env)
    assert res.returncode == 143, f"the run was not stopped by the signal:\n{res.stderr[-2000:]}"
    stopped = [ln for ln in res.stderr.splitlines() if "stopped by SIGTERM" in ln]
    assert len(stopped) == 1 and f"hexssl resume {cut}" in stopped[0], res.stderr[-2000:]
    step = checkpoint(cut)["global_step"]
    assert 2 <= step < 12
    assert hexssl("resume", str(cut)).returncode == 0
    assert_same_state(checkpoint(tmp_path / "ref"), checkpoint(cut))


def test_cli_exit_status_and_one_line(tmp_path, capsys, monkeypatch):
    """``hexssl pretrain`` returns 143 and prints one line when the run is preempted."""
    import hexssl.run.train as train_module

    real = train_module.pretrain

    def signalled(cfg: Any, extra: Any = None) -> Any:
        return real(cfg, [SignalAt(signal.SIGTERM, step=1)])

    monkeypatch.setattr(train_module, "pretrain", signalled)
    code = main(["pretrain", PRESET, *tiny(tmp_path, "c", RARE, "trainer.max_epochs=2")])
    assert code == 143
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [
        f"[hexssl] stopped by SIGTERM: saved step 2 to {tmp_path / 'c/checkpoints/last.ckpt'}; "
        f"continue with: hexssl resume {tmp_path / 'c'}"
    ]
    assert (
        torch.load(Path(tmp_path / "c/checkpoints/last.ckpt"), weights_only=True)["global_step"]
        == 2
    )
    assert load_config(tmp_path / "c/config.yaml").trainer.checkpoint_every_n_steps == 1000


class _Strategy:
    """DDP's max all-reduce, with the other process's signal number as ``other``."""

    root_device = torch.device("cpu")

    def __init__(self, other: int = 0) -> None:
        self.asked, self.other = 0, other

    def reduce(self, value: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "max"
        self.asked += 1
        return torch.clamp(value, min=self.other)


class _DDPTrainer:
    """What Preemption reads of a DDP trainer: world size, global step, the strategy."""

    world_size = 2
    is_global_zero = True

    def __init__(self, other: int = 0) -> None:
        self.global_step, self.strategy = 0, _Strategy(other)


def test_ddp_agrees_on_a_stop_every_few_steps_not_every_step(tmp_path):
    """Each agreement is a collective the CPU waits for (a host sync on a GPU): asked at
    every step it would undo the sync-free step, so it is asked every DDP_AGREE_EVERY."""
    from hexssl.run.preempt import DDP_AGREE_EVERY, Preemption, StopSignals

    signals = StopSignals()
    cb, trainer = Preemption(signals, tmp_path), _DDPTrainer()
    seen = []
    for step in range(1, 3 * DDP_AGREE_EVERY + 1):
        trainer.global_step = step
        if step == DDP_AGREE_EVERY + 1:
            signals.signum = int(signal.SIGTERM)  # arrives just after an agreement
        seen.append(cb._signalled(trainer, DDP_AGREE_EVERY))  # type: ignore[arg-type]
    assert trainer.strategy.asked == 3
    assert seen.index(True) + 1 == 2 * DDP_AGREE_EVERY  # honoured at the next agreement
    trainer.global_step = 1
    assert cb._signalled(trainer)  # type: ignore[arg-type]  # train start, epoch end: always asked


def test_under_ddp_every_process_takes_the_signal_another_one_received(
    tmp_path, monkeypatch, capsys
):
    """SIGUSR1 reached only the other process: this one (rank 0) stops with SIGUSR1's exit
    status and, with requeue on, requeues the job; SIGTERM wins over SIGUSR1."""
    from hexssl.run.preempt import DDP_AGREE_EVERY, Preemption, StopSignals

    monkeypatch.setattr("hexssl.run.preempt.requeue_job", lambda: "requeued SLURM job 7")
    signals = StopSignals()
    cb = Preemption(signals, tmp_path, requeue=True)
    trainer = _DDPTrainer(other=int(signal.SIGUSR1))
    trainer.global_step = DDP_AGREE_EVERY
    assert cb._signalled(trainer, DDP_AGREE_EVERY)  # type: ignore[arg-type]
    err = cb.stop_error("saved", trainer)  # type: ignore[arg-type]
    assert err.exit_code == 128 + signal.SIGUSR1 and "requeued SLURM job 7" in str(err)
    # said at once (SLURM ends a requeued job before the caller could print it), then quiet
    assert err.quiet and f"[hexssl] {err}" in capsys.readouterr().err

    signals.signum = int(signal.SIGUSR1)  # this one got SIGUSR1, the other SIGTERM
    trainer = _DDPTrainer(other=int(signal.SIGTERM))
    assert cb._signalled(trainer)  # type: ignore[arg-type]
    assert cb.stop_error("saved", trainer).exit_code == 143  # type: ignore[arg-type]
