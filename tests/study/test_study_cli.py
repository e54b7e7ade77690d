"""`hexssl study` end to end on tiny synthetic data: workers, resume, status, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.run.lock import hold_run_lock
from hexssl.study.command import plan_study
from hexssl.study.folder import StudyFolder, fix_protocol
from hexssl.study.job import run_job
from hexssl.study.protocol import PROTOCOL_DIR, load_protocol, resolve_protocol
from tests.subproc import run_limited

ROOT = Path(__file__).resolve().parents[2]
TINY = [  # the synthetic-cpu preset at toy size: a few steps per run
    "data.image_size=16",
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
    "data.batch_size=16",
    "backbone.kwargs.width=4",
    "method.params.proj_hidden=32",
    "method.params.proj_out=16",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=1",
    "eval.purity_every_n_steps=1",
    "eval.purity_batch_size=16",
    "study.eval.linear_epochs=2",
    "study.eval.purity_batch_size=16",
    "study.eval.knn_k=5",
]
ARMS = ["--arms", "simclr", "simclr-hex-paper"]
METRICS = ("knn_class_top1", "knn_super_top1", "linear_top1", "linear10_top1", "purity_class",
           "erank_global", "final_eps", "steps")  # fmt: skip


def study(results: Path, *extra: str, tiny: list[str] = TINY) -> list[str]:
    return ["study", "hex-vs-simclr", "synthetic-cpu", "--results", str(results), *extra,
            "--set", *tiny]  # fmt: skip


def _metrics(results: Path, name: str) -> dict[str, object]:
    res = json.loads((results / f"{name}.json").read_text())
    return {k: res[k] for k in METRICS}


def test_two_workers_give_the_results_of_one_and_a_rerun_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(study(one, *ARMS, "--seeds", "0", "--workers", "1")) == 0
    assert main(study(two, *ARMS, "--seeds", "0", "--workers", "2")) == 0
    for name in ("simclr-s0", "simclr-hex-paper-s0"):
        assert _metrics(one, name) == _metrics(two, name), name
        assert "started by hexssl study" in (two / "logs" / f"{name}.log").read_text()
    fixed = load_protocol(two / "protocol.yaml")
    assert json.loads((two / "simclr-s0.json").read_text())["protocol_sha256"] == fixed.sha256
    capsys.readouterr()
    mtime = (two / "simclr-s0.json").stat().st_mtime_ns
    assert main(study(two, *ARMS, "--seeds", "0", "--workers", "2")) == 0  # all done: skipped
    out = capsys.readouterr().out
    assert "2 runs, 2 done, 0 running or queued elsewhere, 0 to run" in out
    assert (two / "simclr-s0.json").stat().st_mtime_ns == mtime
    # the folder keeps its launch's workers: --status estimates with them, a rerun uses them
    assert json.loads((two / "study.json").read_text())["workers"] == 2
    assert plan_study("hex-vs-simclr", ["synthetic-cpu"], overrides=TINY, results=two).workers == 2
    assert plan_study("hex-vs-simclr", ["synthetic-cpu"], overrides=TINY, results=one).workers == 1
    # the verdict needs 2 seeds: one more seed grows the same study (same protocol)
    assert main(study(two, *ARMS, "--seeds", "1")) == 0
    assert main(["study", "report", str(two)]) == 0
    report = (two / "report" / "study.md").read_text()
    assert "## Verdict" in report and "| simclr-hex-paper - simclr | knn_class_top1 | 2 |" in report
    assert (two / "report" / "paired_differences_knn_class_top1.png").is_file()


def test_dry_run_writes_nothing_and_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["study", "hex-vs-simclr", "synthetic-cpu", "--seeds", "0", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "results: studies/hex-vs-simclr-synthetic-cpu" in out and "simclr-decoupled-s1" in out
    assert "denominator: decoupled" in out and "Nothing was written" in out
    assert list(tmp_path.iterdir()) == []
    bad = {
        "unknown arm 'simclr-hex'": ["--arms", "simclr-hex"],
        "seed -1 is out of range": ["--seeds", "-1"],
        "unknown config key 'trainer.max_epoch'": ["--set", "trainer.max_epoch=2"],
        "unknown key 'epoch' (did you mean 'epochs'?)": ["--set", "study.epoch=2"],
        "unknown executor 'pbs'": ["--executor", "pbs"],
        "--executor local takes no options": ["--slurm", "partition=gpu"],
    }
    for message, extra in bad.items():
        assert main(["study", "hex-vs-simclr", "synthetic-cpu", *extra]) == 2, message
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and err.startswith("hexssl: error:"), err
    assert main(["study", "hex-vs-simclr-typo"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'hex-vs-simclr'?" in err and "relatives" in err
    assert list(tmp_path.iterdir()) == []


def test_a_changed_protocol_is_refused_and_nothing_finished_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "res"
    assert main(study(res, "--arms", "simclr", "--seeds", "0")) == 0
    before = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()}
    capsys.readouterr()
    changed = [*TINY, "optim.lr=0.5"]
    for extra in ([], ["--status"], ["--dry-run"]):
        assert main(study(res, "--arms", "simclr", *extra, tiny=changed)) == 2
        err = capsys.readouterr().err
        assert "holds a study with another protocol (arms.simclr.optim.lr differs" in err, err
        assert f"--results {res}-2" in err
    assert {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()} == before


def test_a_results_folder_can_move_with_its_runs(tmp_path: Path) -> None:
    """The runs dir is recorded relative to the results folder when inside it: a moved
    (or copied, or cloned) folder finds its own runs. One outside stays absolute."""
    protocol = resolve_protocol(load_protocol(PROTOCOL_DIR / "hex-vs-simclr.yaml"))
    inside, outside = StudyFolder(tmp_path / "a"), StudyFolder(tmp_path / "b")
    fix_protocol(inside, protocol, tmp_path / "a" / "runs")
    fix_protocol(outside, protocol, tmp_path / "scratch")
    assert json.loads((tmp_path / "a" / "study.json").read_text())["runs_dir"] == "runs"
    (tmp_path / "a").rename(tmp_path / "moved")
    moved = StudyFolder(tmp_path / "moved")
    assert moved.run_dir("simclr", 0) == tmp_path / "moved" / "runs" / "simclr-s0"
    assert outside.runs_dir() == (tmp_path / "scratch").resolve()


def _rows(n: int) -> str:
    """metrics.csv rows: 100 steps per epoch, 200 img/s, up to step n."""
    return "epoch,step,train/epoch_float,train/img_per_s\n" + "".join(
        f"{s // 100},{s},{s / 100},200\n" for s in range(100, n + 1, 100)
    )


def test_status_reads_results_locks_failures_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One table: done, running (a live lock), failed (its log), queued; the time left."""
    res = tmp_path / "res"
    # 40 epochs of 100 steps at batch 256 (the preset's full size is not trained here)
    bigger = ["trainer.max_epochs=40", "data.batch_size=256"]
    tiny = [*TINY, *bigger]
    proto = resolve_protocol(load_protocol("hex-vs-simclr", overrides=TINY[-3:]),
                             ["synthetic-cpu"], [*TINY[:-3], *bigger])  # fmt: skip
    folder = StudyFolder(res)
    fix_protocol(folder, proto, res / "runs")
    (res / "simclr-s0.json").write_text("{}")
    run = folder.run_dir("simclr-hex-paper", 0)
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.csv").write_text(_rows(1000))  # epoch 10 of 40
    (run / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    folder.record_failure("simclr-decoupled", 0, 1, "RuntimeError: out of memory")
    capsys.readouterr()
    with hold_run_lock(run):
        assert main(study(res, "--seeds", "0", "--status", tiny=tiny)) == 0
    text = capsys.readouterr().out
    # 30 epochs x 100 steps x 256 images / 200 img/s = 3840 s = 64 min
    assert "| simclr-s0 | done | 40.0 / 40 | - | 0 min |" in text
    assert (
        f"| simclr-hex-paper-s0 | running | 10.0 / 40 | 200 | 64 min | training: pid {os.getpid()}"
        in text
    )
    log = folder.log_path("simclr-decoupled", 0)
    assert (
        "| simclr-decoupled-s0 | failed | - | - | 85 min | exit 1: RuntimeError: out of "
        f"memory; log {log} |" in text
    )
    assert "3 runs: 1 done, 1 running, 0 queued, 1 failed; training left: 2.5 h of run time" in text
    assert main(study(res, "--seeds", "0", "--status", tiny=tiny)) == 0  # lock released
    assert (
        "| simclr-hex-paper-s0 | queued | 10.0 / 40 | 200 | 64 min | resumes from last.ckpt |"
        in capsys.readouterr().out
    )


def test_job_exit_codes_for_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_job(tmp_path / "nothing", "simclr", 0) == 2
    assert "is not a study results folder" in capsys.readouterr().err
    proto = resolve_protocol(load_protocol("hex-vs-simclr", overrides=TINY[-3:]),
                             ["synthetic-cpu"], TINY[:-3])  # fmt: skip
    fix_protocol(StudyFolder(tmp_path / "res"), proto, tmp_path / "runs")
    assert run_job(tmp_path / "res", "nope", 0) == 2
    assert "unknown arm 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "res" / "logs").exists()  # bad arguments: no run failed


@pytest.mark.slow  # a study process stopped mid-training, then resumed (~1-3 min on 2 busy cores)
def test_a_stopped_study_leaves_resumable_runs_and_a_rerun_resumes(tmp_path: Path) -> None:
    res = tmp_path / "res"
    longer = [*TINY, "trainer.max_epochs=10"]
    cmd = [sys.executable, "-m", "hexssl.cli", *study(res, "--arms", "simclr", "--seeds", "0",
           tiny=longer)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = res / "runs" / "simclr-s0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # the study process this test started
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM after saving" in out and not (res / "simclr-s0.json").exists()
    status = run_limited([*cmd, "--status"], env=env, capture_output=True, text=True)
    assert "| simclr-s0 | queued |" in status.stdout and "resumes from last.ckpt" in status.stdout
    again = run_limited(cmd, env=env, capture_output=True, text=True, cpu_seconds=300,
                        wall_seconds=300)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    log = (res / "logs" / "simclr-s0.log").read_text()
    assert "simclr-s0: resuming from" in log and log.count("started by hexssl study") == 2
    assert json.loads((res / "simclr-s0.json").read_text())["epochs"] == 10


def test_shipped_protocols_compose_with_every_dataset_preset_and_name_no_shared_data() -> None:
    from hexssl.config import preset_names

    for path in PROTOCOL_DIR.glob("*.yaml"):
        assert "../shared" not in path.read_text(), path
    assert {p.stem for p in PROTOCOL_DIR.glob("*.yaml")} >= {"hex-vs-simclr", "relatives"}
    hex_vs = load_protocol("hex-vs-simclr")
    relatives = load_protocol("relatives")
    assert set(hex_vs.arms) == {"simclr", "simclr-hex-paper", "simclr-decoupled"}
    for dataset in preset_names()["dataset"]:
        r = resolve_protocol(hex_vs, [dataset])
        assert r.arms["simclr-decoupled"]["loss"]["denominator"] == "decoupled", dataset
        assert r.arms["simclr-hex-paper"]["hex"]["enabled"] is True, dataset
        rel = resolve_protocol(relatives, [dataset])
        assert rel.arms["moco_v2-hard"]["method"]["name"] == "moco_v2", dataset
    denominators = {a["loss"]["denominator"] for a in resolve_protocol(relatives).arms.values()}
    assert denominators == {"infonce", "decoupled", "debiased", "hard"}


def test_the_benchmark_script_is_a_thin_caller(tmp_path: Path) -> None:
    """benchmarks/hex_study.py passes its folders and --epochs to `hexssl study`."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import hex_study
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    args = hex_study.parse_args(["--arms", "simclr", "--seeds", "0", "--epochs", "2", "--results",
                                 str(tmp_path), "--set", "a.b=1"])  # fmt: skip
    argv = hex_study.study_argv(args)
    assert argv[:2] == ["study", str(hex_study.PROTOCOL)]
    assert argv[argv.index("--set") :] == ["--set", "a.b=1", "study.epochs=2"]
    assert ["--results", str(tmp_path)] == argv[2:4]
    # the committed study folder is the same protocol: status works on it
    res = run_limited([sys.executable, str(ROOT / "benchmarks" / "hex_study.py"), "--status"],
                      cwd=ROOT, capture_output=True, text=True,
                      env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "18 runs: 18 done, 0 running, 0 queued, 0 failed" in res.stdout


def test_listing_the_shipped_protocols_imports_no_torch() -> None:
    """`hexssl study --list` reads YAML files: it must not pay for importing torch and
    lightning (about 3 s), as the study machinery does."""
    code = (
        "import sys; from hexssl.cli import main; assert main(['study', '--list']) == 0; "
        "print('torch' in sys.modules, 'lightning' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "hex-vs-simclr" in res.stdout and "relatives" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "False False", res.stdout
