"""The HEX study machinery: protocol, pairing of arms by seed, the in-process runner,
release, transfer, and our campaign tooling (benchmarks/campaign.py: snapshots, git)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from benchmarks.campaign import git_commit_paths
from safetensors.torch import load_file

from hexssl.cli import main
from hexssl.config import RunConfig
from hexssl.export import load_release
from hexssl.run.build import build_datamodule, build_method
from hexssl.study import Study, arm_config, load_protocol, run_study, schedule, train_run
from tests.subproc import run_limited

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "benchmarks" / "hex_study_protocol.yaml"
GPU_PROTOCOL = ROOT / "benchmarks" / "hex_study_gpu_protocol.yaml"
# tiny synthetic stand-in for the protocol's data and widths (every other key as the protocol)
TINY = [
    "data.dataset=synthetic",
    "data.root=null",
    "data.image_size=16",
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
    "data.batch_size=16",
    "backbone.kwargs.width=4",
    "method.params.proj_hidden=32",
    "method.params.proj_out=16",
    "trainer.precision=32",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=1",
    "eval.purity_every_n_steps=1",
    "eval.purity_batch_size=16",
]


@pytest.fixture(scope="module")
def protocol():  # type: ignore[no-untyped-def]
    return load_protocol(PROTOCOL)


# ------------------------------------------------------------------------- protocol
def test_protocol_defines_the_issue_11_runs(protocol) -> None:  # type: ignore[no-untyped-def]
    assert list(protocol.arms) == [
        "simclr", "simclr-hex-paper", "simclr-hex-reference", "simclr-oracle", "barlow",
        "barlow-hex",
    ]  # fmt: skip
    assert protocol.seeds == [0, 1, 2] and protocol.epochs == 40
    cfg = {a: arm_config(protocol, a, 1, "runs/x") for a in protocol.arms}
    for c in cfg.values():
        assert c.data.root == "../shared/data/tiny-imagenet-hier50.tar.gz"
        assert "max_train_samples" not in c.data.options and c.data.image_size == 32
        assert c.backbone.kwargs == {"stem": "cifar", "width": 16} and c.data.batch_size == 256
        assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("lars", 0.3, 1e-4)
        assert c.trainer.max_epochs == 40 and c.optim.warmup_epochs == 4.0
        assert c.hex.warmup_epochs == 4.0 and c.trainer.precision == "32"
        assert c.seed == 1 and c.run_dir == Path("runs/x") / f"{c.label}-s1"
    assert not cfg["simclr"].hex.enabled and cfg["simclr"].method.params["temperature"] == 0.1
    paper = cfg["simclr-hex-paper"].hex
    assert paper.enabled and paper.variant == "paper" and paper.threshold == "adaptive"
    assert (paper.q, paper.beta, paper.tau_plus, paper.lambda_local) == (0.99, 1.0, 0.1, 1.0)
    assert cfg["simclr-hex-reference"].hex.variant == "reference"
    oracle = cfg["simclr-oracle"].hex
    assert oracle.threshold == "superclass_oracle" and oracle.variant == "paper"
    assert cfg["barlow"].method.name == "barlow" and not cfg["barlow"].hex.enabled
    bh = cfg["barlow-hex"].hex
    assert bh.enabled and (bh.alpha, bh.temperature, bh.variant) == (0.1, 0.1, "paper")
    assert ("barlow-hex", "barlow") in protocol.comparisons
    assert protocol.label_using == ["simclr-oracle"]


def test_gpu_protocol_is_the_issues_full_width_runs() -> None:
    p = load_protocol(GPU_PROTOCOL)
    arms = ["simclr", "simclr-hex-paper", "simclr-dcl", "simclr-hex-reference"]
    assert list(p.arms) == arms and p.seeds == [0, 1, 2]
    assert arm_config(p, "simclr-dcl", 0, "runs").loss.denominator == "decoupled"
    for arm in p.arms:
        c = arm_config(p, arm, 0, "runs")
        assert c.backbone.kwargs == {"stem": "cifar", "width": 64} and c.data.batch_size == 512
        assert (c.trainer.precision, c.trainer.accelerator, c.data.on_device) == (
            "bf16-mixed", "gpu", True,
        )  # fmt: skip
        assert (c.trainer.max_epochs, c.optim.warmup_epochs, c.hex.warmup_epochs) == (100, 10, 10)
    paper = arm_config(p, "simclr-hex-paper", 0, "runs").hex
    assert paper.enabled and (paper.q, paper.beta, paper.tau_plus) == (0.99, 1.0, 0.1)


def test_gpu_script_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    """benchmarks/hex_study_gpu.sh at toy size: one run, results packed in one archive."""
    import sys
    import tarfile

    data = tmp_path / "data.tar.gz"
    data.write_bytes(b"")  # the script checks it exists; TINY swaps in synthetic data
    out = tmp_path / "out"
    extra = ["--arms", "simclr-hex-paper", "--seeds", "0", "--epochs", "1"]
    args = ["bash", "benchmarks/hex_study_gpu.sh", str(data), str(out), "600", *extra]
    env = {**os.environ, "PYTHON": sys.executable}
    overrides = [*TINY, "data.on_device=true"]
    res = run_limited(
        [*args, "--set", *overrides], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0 and "campaign exit 0" in res.stdout, res.stdout + res.stderr
    with tarfile.open(out / "hex_study_gpu.tgz") as tar:
        names = set(tar.getnames())
        result = json.load(tar.extractfile("hex_study_gpu/simclr-hex-paper-s0.json"))  # type: ignore[arg-type]
    assert {"hex_study_gpu/log.txt", "hex_study_gpu/machine.txt"} <= names
    assert "hex_study_gpu/curves/simclr-hex-paper-s0.csv" in names
    assert not [n for n in names if "weights" in n]  # 22 MB each at width 64: left out
    assert result["config"]["data"]["on_device"] is True and result["epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["hex_study_gpu.tgz"]  # nothing else


def test_schedule_completes_the_first_comparison_first(protocol) -> None:  # type: ignore[no-untyped-def]
    order = schedule(protocol, list(protocol.arms), [0, 1, 2])
    assert order[:6] == [
        ("simclr", 0), ("simclr-hex-paper", 0), ("simclr", 1), ("simclr-hex-paper", 1),
        ("simclr", 2), ("simclr-hex-paper", 2),
    ]  # fmt: skip
    assert order[6:9] == [("simclr-hex-reference", s) for s in (0, 1, 2)]
    assert sorted(order) == sorted((a, s) for a in protocol.arms for s in (0, 1, 2))
    assert order[-3:] == [("barlow-hex", s) for s in (0, 1, 2)]
    assert schedule(protocol, ["barlow"], [1]) == [("barlow", 1)]


def test_epochs_is_the_one_knob_and_warmups_follow() -> None:
    p = load_protocol(PROTOCOL, epochs=40)
    c = arm_config(p, "simclr-hex-paper", 0, "runs")
    assert (c.trainer.max_epochs, c.optim.warmup_epochs, c.hex.warmup_epochs) == (40, 4.0, 4.0)


def test_protocol_typo_fails_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(PROTOCOL.read_text().replace("lambda_local: 1.0", "lambda_locl: 1.0"))
    with pytest.raises(ValueError, match="lambda_locl"):
        load_protocol(bad)


# -------------------------------------------------------------------------- pairing
def _first_batch(
    cfg: RunConfig,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor], int]:
    """Backbone init, first batch indices, its augmented views and the augmentation seed."""
    from lightning import seed_everything

    seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    method = build_method(cfg, dm)
    images, _, _, index = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        gen = method.step_generator(images.device)
        aug_seed = gen.initial_seed()
        views = method.augment(images, generator=gen)
    return method.backbone.state_dict(), index, views, aug_seed


def test_a_seed_gives_every_arm_the_same_init_data_order_and_views(protocol) -> None:  # type: ignore[no-untyped-def]
    runs = {a: _first_batch(arm_config(protocol, a, 1, "runs", TINY)) for a in protocol.arms}
    ref_state, ref_index, _, ref_aug = runs["simclr"]
    for arm, (state, index, views, aug) in runs.items():
        assert aug == ref_aug, arm
        assert all(torch.equal(state[k], ref_state[k]) for k in ref_state), arm
        assert torch.equal(index, ref_index), arm
        family = "barlow" if arm.startswith("barlow") else "simclr"  # each method's own recipe
        ref_views = runs[family][2]
        assert all(torch.equal(v, r) for v, r in zip(views, ref_views)), arm
    other = _first_batch(arm_config(protocol, "simclr", 2, "runs", TINY))
    other_state, other_index, other_views, other_aug = other
    assert other_aug != ref_aug  # the seed reaches the augmentation stream
    assert not torch.equal(other_state["conv1.weight"], ref_state["conv1.weight"])
    assert not torch.equal(other_views[0], runs["simclr"][2][0])
    assert not torch.equal(other_index, ref_index)


# ------------------------------------------------------------------ in-process runner
def test_runner_end_to_end_resume_and_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run_study: a half-trained run resumes; the result, weights and curves are written."""
    p = load_protocol(PROTOCOL, epochs=2)
    study = Study(p, tmp_path / "runs", tmp_path / "res", ["simclr-hex-paper"], [0], TINY)
    # an interrupted run: trained 1 of 2 epochs, then killed (its last.ckpt stays)
    half = arm_config(p, "simclr-hex-paper", 0, study.runs_dir, [*TINY, "trainer.max_epochs=1"])
    first_session = train_run(half)
    (half.run_dir / "study_train.json").unlink()
    run_study(study)
    assert "simclr-hex-paper-s0: resuming from" in capsys.readouterr().out
    res = json.loads((study.results_dir / "simclr-hex-paper-s0.json").read_text())
    keys = [
        "arm", "seed", "epochs", "knn_class_top1", "knn_super_top1", "linear_top1",
        "linear10_top1", "purity_class", "purity_super", "purity_class_chance",
        "purity_super_chance", "erank_global", "erank_super", "final_eps",
        "final_neighbour_frac", "seconds", "config", "protocol_sha256", "overrides",
    ]  # fmt: skip
    assert all(k in res for k in keys), [k for k in keys if k not in res]
    assert res["epochs"] == 2 and res["steps"] == 4 and res["overrides"] == TINY
    assert res["seconds"] > first_session  # wall time summed over both sessions
    assert res["purity_own_class"] is not None and res["final_eps"] is not None
    fixed = load_protocol(study.results_dir / "protocol.yaml")
    assert fixed.resolved and res["protocol_sha256"] == fixed.sha256
    weights = study.results_dir / "weights" / "simclr-hex-paper-s0.safetensors"
    state = load_file(weights)  # safetensors: tensors only
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    _, meta = load_release(weights)
    assert meta["backbone"] == {"name": "resnet18", "kwargs": {"stem": "cifar", "width": 4}}
    curves = (study.results_dir / "curves" / "simclr-hex-paper-s0.csv").read_text().splitlines()
    assert curves[0].startswith("step,val/purity_class") and len(curves) > 3
    # the released file reproduces the run's kNN without the run directory
    assert main(["knn", str(weights), "--data", *TINY[:4]]) == 0
    mtime = (study.results_dir / "simclr-hex-paper-s0.json").stat().st_mtime_ns
    run_study(study)  # finished: skipped
    assert (study.results_dir / "simclr-hex-paper-s0.json").stat().st_mtime_ns == mtime


def test_the_library_runner_never_starts_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hexssl.study.run_study: results for a user's own arms; it never starts git."""
    real_popen = subprocess.Popen

    def no_git(args, *a, **k):  # type: ignore[no-untyped-def]
        assert not (isinstance(args, list | tuple) and str(args[0]) == "git"), args
        return real_popen(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", no_git)
    p = load_protocol(PROTOCOL, epochs=1)
    study = Study(p, tmp_path / "runs", tmp_path / "res", ["simclr"], [0], TINY)
    (path,) = run_study(study, provenance={"source": "test"})
    res = json.loads(path.read_text())
    assert res["source"] == "test" and "git_commit" not in res and res["epochs"] == 1
    assert (study.results_dir / "weights" / "simclr-s0.safetensors").is_file()
    assert "resolved: true" in (study.results_dir / "protocol.yaml").read_text()


def test_every_other_arm_trains_and_evaluates_end_to_end(tmp_path: Path) -> None:
    # simclr and simclr-hex-paper are covered above; these four run in later sessions
    arms = ["simclr-hex-reference", "simclr-oracle", "barlow", "barlow-hex"]
    p = load_protocol(PROTOCOL, epochs=1)
    study = Study(p, tmp_path / "runs", tmp_path / "res", arms, [0], TINY)
    assert [q.stem for q in run_study(study)] == [f"{a}-s0" for a in arms]
    for arm in arms:
        res = json.loads((study.results_dir / f"{arm}-s0.json").read_text())
        assert 0.0 <= res["knn_class_top1"] <= 100.0 and res["linear10_top1"] >= 0.0, arm
        # every HEX arm logs its neighbours; the oracle has no threshold, so no eps
        assert (res["final_neighbour_frac"] is None) == (arm == "barlow"), arm
        assert (res["final_eps"] is None) == (arm in ("barlow", "simclr-oracle")), arm
        assert res["label_using"] == (arm == "simclr-oracle"), arm
        assert res["config"]["hex"]["enabled"] == (arm != "barlow"), arm
        assert (study.results_dir / "weights" / f"{arm}-s0.safetensors").is_file(), arm


def test_train_run_starts_clean_without_a_checkpoint(protocol, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = arm_config(protocol, "simclr", 0, tmp_path, [*TINY, "trainer.max_epochs=1"])
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text("left by a crash before any checkpoint")
    seconds = train_run(cfg, log=lambda _: None)
    assert seconds > 0 and (cfg.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "crash" not in (cfg.run_dir / "config.yaml").read_text()
    assert train_run(cfg) == seconds  # finished: nothing retrained


def test_git_commit_commits_only_the_given_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "other.txt").write_text("staged by someone else")
    git("add", "other.txt")
    (tmp_path / "r.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert git_commit_paths([Path("r.json")], "hex_study: r")
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["r.json"]
    assert "other.txt" in git("diff", "--cached", "--name-only")  # still staged, not committed


# ------------------------------------------------------------------------- transfer
def _release(results: Path, arm: str, seed: int) -> None:
    """A released (untrained) backbone, as the campaign writes it."""
    from hexssl.backbones import build_backbone
    from hexssl.export import export_release

    kwargs = {"stem": "cifar", "width": 4}
    net = build_backbone("resnet18", **kwargs)
    path = results / "weights" / f"{arm}-s{seed}.safetensors"
    export_release(net, path, "resnet18", kwargs, 16, [0.5] * 3, [0.25] * 3,
                   {"arm": arm, "seed": seed})  # fmt: skip


def test_transfer_knn_on_another_image_folder(tmp_path: Path) -> None:
    from hexssl.study import transfer
    from tests.pipeline.tiny import write_tree

    tree = write_tree(tmp_path / "other", {"a": "x", "b": "x", "c": "y", "d": "z"})
    _release(tmp_path / "res", "simclr", 0)
    _release(tmp_path / "res", "simclr-hex-paper", 0)
    out = transfer(tmp_path / "res", [tree])
    assert [p.name for p in out] == ["simclr-hex-paper-s0.json", "simclr-s0.json"]
    r = json.loads(out[1].read_text())
    assert (r["num_classes"], r["num_superclasses"], r["n_train"], r["n_val"]) == (4, 3, 16, 8)
    assert 0 <= r["knn_class_top1"] <= 100 and 0 <= r["knn_super_top1"] <= 100
    assert transfer(tmp_path / "res", [tree]) == []  # done: skipped


@pytest.mark.slow
def test_transfer_on_shared_cifar10(tmp_path: Path) -> None:
    from hexssl.study import transfer

    cifar = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    if not cifar.is_file():
        pytest.skip(f"shared dataset not found at {cifar} (see ../shared/data/README.md)")
    _release(tmp_path, "simclr", 0)
    (out,) = transfer(tmp_path, [cifar], max_samples=300)
    r = json.loads(out.read_text())
    assert out.parent.name == "cifar10-jpeg" and (r["num_classes"], r["num_superclasses"]) == (
        10,
        2,
    )
    assert (r["n_train"], r["n_val"]) == (300, 300)


def test_snapshot_lets_a_fresh_machine_resume_an_unfinished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--snapshot copies last.ckpt into the results; a new runs dir resumes from it."""
    from benchmarks.campaign import inflight_path, restore_inflight, snapshot

    p = load_protocol(PROTOCOL, epochs=2)
    res, runs = tmp_path / "res", tmp_path / "runs"
    half = arm_config(p, "simclr", 0, runs, [*TINY, "trainer.max_epochs=1"])
    train_run(half)
    (half.run_dir / "study_train.json").unlink()  # as if killed after epoch 1
    saved = snapshot(res, runs, [("simclr", 0)])
    assert saved[0] == inflight_path(res, "simclr-s0") and saved[0].is_file()
    assert saved[1].name == "simclr-s0.metrics.csv"  # the curves travel with it
    fresh = tmp_path / "other-machine"
    assert restore_inflight(res, fresh) == ["simclr-s0"]
    run_study(Study(p, fresh, res, ["simclr"], [0], TINY))
    out = capsys.readouterr().out
    assert "resuming from the snapshot" in out and "simclr-s0: resuming from" in out
    assert (res / "simclr-s0.json").is_file()
    assert restore_inflight(res, fresh) == []  # the run is done: its snapshot goes
    assert not any(q.exists() for q in saved)
    assert (fresh / "simclr-s0" / "metrics.csv").is_file()


def test_provenance_without_a_git_program_is_not_a_crash(monkeypatch):  # type: ignore[no-untyped-def]
    from benchmarks import campaign

    monkeypatch.setenv("PATH", "/nonexistent")
    assert campaign.is_tracked(Path("README.md")) is False


def test_the_gpu_study_length_rule() -> None:
    """benchmarks/gpu/study_length.py: the protocol's rule, and 0 when nothing fits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "study_length", ROOT / "benchmarks" / "gpu" / "study_length.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.study_length(10_000, 3 * 25_000 * 100 / 10_000 + 90) == 100
    assert mod.study_length(10_000, 3 * 25_000 * 100 / 10_000 + 89) == 80
    assert mod.study_length(8_000, 400) == 30
    assert mod.study_length(500, 400) == 0
    seed0 = {"simclr-s0", "simclr-hex-paper-s0", "simclr-dcl-s0"}
    assert mod.next_runs(seed0, 5) == ([1], ["simclr", "simclr-hex-paper", "simclr-dcl"])
    assert mod.next_runs(seed0 | {"simclr-s1"}, 5) == ([1], ["simclr-hex-paper", "simclr-dcl"])
    arms13 = {f"{a}-s{s}" for a in mod.ARMS[:3] for s in (0, 1, 2)}
    assert mod.next_runs(arms13, 3) == ([0, 1, 2], ["simclr-hex-reference"])
    assert mod.runs_that_fit(14_399, 580, 60) == 4


def test_the_gpu_study_plan_falls_back_to_a_check_that_measured_speed(tmp_path: Path) -> None:
    """A check cut before its host_syncs section, or run without it, leaves a
    gpu_check.json without the speed: the committed check's speed plans the runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "study_length", ROOT / "benchmarks" / "gpu" / "study_length.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    partial = tmp_path / "gpu_check.json"
    partial.write_text('{"environment": {}, "loss_speed": []}')
    committed = tmp_path / "committed.json"
    committed.write_text('{"host_syncs": {"img_per_s": 14399.0}}')
    assert mod.plan([partial], 421, None) == "0"  # 421 s: the first call's case, 60 epochs
    assert mod.plan([partial, committed], 421, None) == "60 0 simclr,simclr-hex-paper,simclr-dcl"
    assert mod.plan([tmp_path / "missing.json", committed], 421, None).startswith("60 0 ")


@pytest.mark.slow  # three toy runs at once, ~70 s on 2 cores
def test_the_gpu_session_trains_the_next_runs_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu/session.sh without the check: the rule's next runs, packed."""
    import sys
    import tarfile

    data = tmp_path / "data.tar.gz"
    data.write_bytes(b"")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DRY": "1", "CHECK_SECONDS": "0",
           "FORCE_EPOCHS": "1", "RESULTS": str(tmp_path / "none")}  # fmt: skip
    cmd = ["bash", "benchmarks/gpu/session.sh", str(out), str(data), "500", "--set", *TINY,
           "data.on_device=true"]  # fmt: skip
    res = run_limited(cmd, cwd=ROOT, env=env, cpu_seconds=400, wall_seconds=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "seeds 0, arms simclr,simclr-hex-paper,simclr-dcl" in res.stdout
    with tarfile.open(out / "hex_study_gpu.tgz") as tar:
        names = set(tar.getnames())
    assert {f"hex_study_gpu/{a}-s0.json" for a in ("simclr", "simclr-dcl")} <= names
