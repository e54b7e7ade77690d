"""Issue 9.2 and 9.9: what a resume does to the run directory.

One interrupted-then-resumed SimCLR run (module fixture) and its uninterrupted twin are
shared by the tests: the history survives, config.yaml is clean, a stale ``.tmp`` is
removed; then a finished run, a damaged checkpoint and a mid-run change are resumed.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.config import ConfigError
from hexssl.run.train import pretrain, resume

from .helpers import InterruptedRunError, StopAt, assert_same_state, checkpoint, tiny_run

HEX = ["hex.enabled=true", "trainer.log_every_n_steps=3"]  # rows at steps 2, 5; flush at 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("resume")
    pretrain(tiny_run(tmp, "ref", "simclr", *HEX))
    with pytest.raises(InterruptedRunError):
        pretrain(tiny_run(tmp, "cut", "simclr", *HEX), [StopAt(3)])
    cut = tmp / "cut"
    _append_rows_after(cut / "metrics.csv", step=3)  # logged after the checkpoint, then killed
    _append_event_after(cut / "tb", step=3)
    (cut / "checkpoints/last.ckpt.tmp").write_bytes(b"half a checkpoint")
    resume(cut, ["trainer.checkpoint_every_n_steps=2"])  # a safe change, recorded
    return tmp / "ref", cut


def _append_rows_after(path: Path, step: int) -> None:
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    with path.open("a", newline="") as f:
        row = {"step": str(step), "train/loss": "123.0"}
        csv.writer(f).writerow([row.get(h, "") for h in header])


def _append_event_after(tb: Path, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tb)) as writer:
        writer.add_scalar("train/loss", 123.0, step)


def tb_scalars(tb: Path, key: str = "train/loss") -> list[tuple[int, float]]:
    """(step, value) of ``key`` as TensorBoard shows it (purged events hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(key)]


def metric_rows(run: Path, key: str = "train/loss") -> list[tuple[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [(r["step"], r[key]) for r in csv.DictReader(f) if r.get(key)]


def test_resumed_run_is_exact_and_keeps_its_history(runs):
    ref, cut = runs
    assert_same_state(checkpoint(ref), checkpoint(cut))
    # Validation of epoch 0 (step 1, unflushed at the kill but flushed with the epoch-end
    # checkpoint) is kept; the fake row after the checkpoint is gone.
    assert metric_rows(cut, "val/online_acc1") == metric_rows(ref, "val/online_acc1")
    # The training row of the checkpointed step itself (step 2) is logged by Lightning
    # after the checkpoint callback, so the kill lost it; every other row is there.
    assert metric_rows(cut) == [r for r in metric_rows(ref) if r[0] != "2"]


def test_resumed_tensorboard_hides_what_was_logged_after_the_checkpoint(runs):
    ref, cut = runs
    # the fake event at the checkpoint's step is purged (without purge_step it would show);
    # the validation curve is the uninterrupted run's, each step once
    assert 123.0 not in [v for _, v in tb_scalars(cut / "tb")]
    assert tb_scalars(cut / "tb", "val/online_acc1") == tb_scalars(ref / "tb", "val/online_acc1")


def test_resume_writes_a_clean_config_and_a_log(runs):
    _, cut = runs
    text = (cut / "config.yaml").read_text()
    assert "resume: null" in text and "resume: auto" not in text
    log = (cut / "resumes.log").read_text()
    assert "resumed at step 3" in log and "trainer.checkpoint_every_n_steps: 1 -> 2" in log


def test_stale_tmp_is_removed(runs):
    _, cut = runs
    assert not list((cut / "checkpoints").glob("*.tmp"))
    assert (cut / "checkpoints/previous.ckpt").is_file()


def snapshot(run: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a run with its mtime and bytes."""
    files = sorted(p for p in run.rglob("*") if p.is_file())
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_resume_of_a_finished_run_is_a_noop(runs, capsys):
    ref, _ = runs
    before = snapshot(ref)
    assert main(["resume", str(ref)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert snapshot(ref) == before


def test_damaged_checkpoint_changes_nothing_and_names_a_fallback(runs, tmp_path, capsys):
    run = tmp_path / "cut"
    shutil.copytree(runs[1], run)
    (run / "checkpoints/last.ckpt").write_bytes(b"\0" * 100)
    before = snapshot(run)
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "--checkpoint previous" in err and "Traceback" not in err
    assert snapshot(run) == before


def test_mid_run_change_needs_allow_changes(runs, tmp_path, capsys):
    run = tmp_path / "cut"
    shutil.copytree(runs[1], run)
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"data.batch_size: 16 -> 32.*--allow-changes"):
        resume(run, ["data.batch_size=32"])
    assert main(["resume", str(run), "optim.lr=1.0"]) == 2
    assert snapshot(run) == before


def test_allowed_change_is_recorded(runs, tmp_path):
    run = tmp_path / "ref"
    shutil.copytree(runs[0], run)
    resume(run, ["data.batch_size=32", "trainer.max_epochs=3"], allow_changes=True)
    log = (run / "resumes.log").read_text()
    assert "data.batch_size: 16 -> 32" in log and "trainer.max_epochs: 2 -> 3" in log
    assert "batch_size: 32" in (run / "config.yaml").read_text()


def test_evaluation_says_which_checkpoint(runs, capsys):
    ref, _ = runs
    assert main(["knn", str(ref), "--k", "5"]) == 0
    assert f"evaluating {ref}/checkpoints/last.ckpt (--checkpoint last)" in capsys.readouterr().out
