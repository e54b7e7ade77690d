"""The "Does HEX help?" study (issue 11): protocol, resumable campaign, per-run results.

A protocol file (``benchmarks/hex_study_protocol.yaml``) fixes the arms, seeds and the
complete config of every run before any result exists. :func:`run_campaign` trains
each (arm, seed) that has no result yet (resuming from its ``last.ckpt`` when one
exists, else starting in a clean directory), evaluates it, and writes at once:

* ``<results>/<arm>-s<seed>.json``: the metrics, the config, the git commit;
* ``<results>/weights/<arm>-s<seed>.pt`` + ``.json``: the backbone as fp16 with its
  architecture (evaluate with ``hexssl knn FILE.pt --data ...``);
* ``<results>/curves/<arm>-s<seed>.csv``: the emergence curves (purity, eps by step).

``hexssl report <results> --study`` rebuilds the tables from the JSON files.

Example:
    >>> p = load_protocol("benchmarks/hex_study_protocol.yaml")
    >>> cfg = arm_config(p, "simclr-hex-paper", seed=0, runs_dir="runs/hex_study")
    >>> cfg.hex.warmup_epochs, cfg.trainer.max_epochs  # the protocol's 40-epoch fallback
    (4.0, 40)
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from hexssl.build import check_names
from hexssl.config import ConfigError, RunConfig, from_dict, merge, parse_override, set_path
from hexssl.config import to_dict as config_dict
from hexssl.data.transforms import build_augmentation
from hexssl.evaluate import dataset_tag
from hexssl.machine import machine_summary

PROTOCOL_KEYS = {"epochs", "warmup_fraction", "seeds", "eval", "base", "arms", "comparisons"}
CURVE_COLUMNS = (
    "val/purity_class",
    "val/purity_super",
    "val/purity_class_chance",
    "val/purity_super_chance",
    "val/purity_eps",
    "val/purity_neighbour_frac",
    "val/purity_q99_class",
    "val/purity_q99_super",
    "val/purity_q99_eps",
    "train/hex/eps",
    "train/hex/neighbour_frac",
)


# ------------------------------------------------------------------------- protocol
@dataclass
class Protocol:
    """A parsed protocol file (see ``benchmarks/hex_study_protocol.yaml``)."""

    path: Path
    epochs: int
    warmup_fraction: float
    seeds: list[int]
    eval: dict[str, Any]
    base: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    comparisons: list[tuple[str, str]]
    label_using: list[str]
    sha256: str

    @property
    def warmup_epochs(self) -> float:
        """LR and HEX warm-up: ``warmup_fraction * epochs`` (6 of 60)."""
        return round(self.warmup_fraction * self.epochs, 6)


def load_protocol(path: str | Path, epochs: int | None = None) -> Protocol:
    """Read and validate a protocol; ``epochs`` overrides its length (smoke tests).

    Every arm's config is validated here (keys, names and combinations), so a typo
    fails before any training.
    """
    p = Path(path)
    text = p.read_text()
    raw = yaml.safe_load(text)
    missing = PROTOCOL_KEYS - set(raw or {})
    if missing:
        raise ConfigError(f"protocol {p}: missing keys {sorted(missing)}")
    comparisons = [(str(a), str(b)) for a, b in raw["comparisons"]]
    proto = Protocol(
        path=p,
        epochs=int(epochs if epochs is not None else raw["epochs"]),
        warmup_fraction=float(raw["warmup_fraction"]),
        seeds=[int(s) for s in raw["seeds"]],
        eval=dict(raw["eval"]),
        base=dict(raw["base"]),
        arms={str(k): dict(v or {}) for k, v in raw["arms"].items()},
        comparisons=comparisons,
        label_using=[str(a) for a in raw.get("label_using", [])],
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    unknown = {a for pair in comparisons for a in pair} - set(proto.arms)
    if unknown:
        raise ConfigError(f"protocol {p}: comparisons name unknown arms {sorted(unknown)}")
    for arm in proto.arms:  # names and combinations too (HEX + a relative is refused)
        check_names(arm_config(proto, arm, proto.seeds[0], "runs"))
    return proto


def run_name(arm: str, seed: int) -> str:
    """``<arm>-s<seed>``: the run directory, result JSON and weights file name."""
    return f"{arm}-s{seed}"


def arm_config(
    protocol: Protocol,
    arm: str,
    seed: int,
    runs_dir: str | Path,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The complete config of one run: base, the arm, the derived keys, then overrides."""
    if arm not in protocol.arms:
        raise ConfigError(f"unknown arm {arm!r}; the protocol has {list(protocol.arms)}")
    data = merge(copy.deepcopy(protocol.base), copy.deepcopy(protocol.arms[arm]))
    derived = {
        "name": run_name(arm, seed),
        "label": arm,
        "seed": seed,
        "output_dir": str(runs_dir),
        "trainer": {"max_epochs": protocol.epochs},
        "optim": {"warmup_epochs": protocol.warmup_epochs},
        "hex": {"warmup_epochs": protocol.warmup_epochs},
    }
    data = merge(data, derived)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
    return from_dict(RunConfig, data)


# ------------------------------------------------------------------------- training
class WallClock(Callback):
    """Training wall time summed over sessions: saved in every checkpoint, restored on resume.

    Time after the last checkpoint of a killed session is not counted (that work is
    redone after the resume, and counted then).
    """

    def __init__(self) -> None:
        self.before = 0.0
        self.start: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    @property
    def total(self) -> float:
        """Seconds of training so far, all sessions."""
        now = time.perf_counter() - self.start if self.start is not None else 0.0
        return self.before + now

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict["seconds"])


TRAIN_DONE = "study_train.json"


def train_run(cfg: RunConfig, log: Callable[[str], None] = print) -> float:
    """Train one run to the end and return its training seconds (all sessions).

    Finished (``study_train.json`` present): nothing to do. A ``last.ckpt``: resume from
    it. Otherwise: remove whatever a crash left and start in a clean directory.
    """
    from hexssl.train import atomic_write_text, last_checkpoint, pretrain

    run_dir = cfg.run_dir
    done = run_dir / TRAIN_DONE
    if done.is_file():
        return float(json.loads(done.read_text())["seconds"])
    ckpt = last_checkpoint(run_dir)
    if ckpt is None and run_dir.exists():
        log(f"[study] {cfg.name}: no checkpoint in {run_dir}; starting again in a clean dir")
        shutil.rmtree(run_dir)
    log(f"[study] {cfg.name}: {'resuming from ' + str(ckpt) if ckpt else 'training'}")
    cfg = copy.deepcopy(cfg)
    cfg.resume = "auto" if ckpt is not None else None
    clock = WallClock()
    pretrain(cfg, [clock])
    seconds = round(clock.total, 1)
    atomic_write_text(done, json.dumps({"seconds": seconds}))
    return seconds


# ----------------------------------------------------------------------- evaluation
def _finite(value: Any) -> Any:
    """NaN / inf -> None (JSON null), recursively; other values unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def purity_summary(method: Any, dataset: Any, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Neighbour purity over the whole split, in seeded random batches (as training sees).

    Per rule of :meth:`SSLMethod.purity_sets` (``q99`` for every run, ``own`` with HEX
    on), counts are pooled over batches. Keys: ``purity_<rule>_<class|super>`` and
    ``..._chance``, ``eps_<rule>``, ``neighbour_frac_<rule>`` (batch means).
    """
    from hexssl.eval.hierarchy import PurityCounts, purity_counts

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    counts: dict[tuple[str, str], PurityCounts] = {}
    eps: dict[str, list[float]] = {}
    frac: dict[str, list[float]] = {}
    for idx in order.split(batch_size):
        if idx.numel() < 2:
            continue
        images, labels, supers, _ = dataset.get_batch(idx)
        sets = method.purity_sets(images.to(method.device), supers.to(method.device))
        n = idx.numel()
        exclude = torch.eye(n, dtype=torch.bool)
        for rule, (H, e) in sets.items():
            H = H.cpu()
            eps.setdefault(rule, []).append(e)
            frac.setdefault(rule, []).append(float(H.float().sum()) / (n * (n - 1)))
            for level, lab in (("class", labels), ("super", supers)):
                c = purity_counts(H, lab, lab, exclude)
                counts[(rule, level)] = counts.get((rule, level), PurityCounts()) + c
    out: dict[str, float] = {}
    for (rule, level), c in counts.items():
        rates = c.summary()
        out[f"purity_{rule}_{level}"] = rates["pooled"]
        out[f"purity_{rule}_{level}_chance"] = rates["chance"]
    for rule in eps:
        out[f"eps_{rule}"] = (
            float(np.nanmean(eps[rule])) if any(map(math.isfinite, eps[rule])) else math.nan
        )
        out[f"neighbour_frac_{rule}"] = float(np.mean(frac[rule]))
    return out


def evaluate_run(cfg: RunConfig, protocol: Protocol) -> dict[str, Any]:
    """kNN, linear probes, purity, effective rank and HEX state of one finished run."""
    from hexssl.eval.hierarchy import per_group_effective_rank
    from hexssl.evaluate import encoder_features, knn_summary, linear_summary, open_run_encoder
    from hexssl.runs import open_run

    ev = protocol.eval
    enc = open_run_encoder(cfg.run_dir, [])
    train, val = encoder_features(enc)
    knn = knn_summary(train, val, [int(ev["knn_k"])], [float(ev["knn_t"])])
    fractions = [float(f) for f in ev["linear_fractions"]]
    lin = linear_summary(train, val, fractions, cfg.seed, int(ev["linear_epochs"]))
    erank = per_group_effective_rank(val[0], val[2])
    erank_global = erank.pop("global")
    _, method, dm = open_run(cfg.run_dir, ["eval.purity_every_n_steps=0"])
    method.to(enc.device)
    purity = purity_summary(method, dm.val_set, int(ev["purity_batch_size"]), cfg.seed)
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    out: dict[str, Any] = {
        "knn_class_top1": knn.get("knn_class_top1"),
        "knn_super_top1": knn.get("knn_super_top1"),
        "knn_class_top5": knn.get("knn_class_top5"),
        "linear_top1": lin.get("linear_class_100pct_top1"),
        "linear10_top1": lin.get("linear_class_10pct_top1"),
        "linear_super_top1": lin.get("linear_super_100pct_top1"),
        # q = 0.99 on the tensors HEX acts on: one definition for every arm (comparable)
        "purity_class": purity["purity_q99_class"],
        "purity_class_chance": purity["purity_q99_class_chance"],
        "purity_super": purity["purity_q99_super"],
        "purity_super_chance": purity["purity_q99_super_chance"],
        # the H the loss uses (the run's own threshold); None with HEX off
        "purity_own_class": purity.get("purity_own_class"),
        "purity_own_super": purity.get("purity_own_super"),
        "eps_own_val": purity.get("eps_own"),
        "erank_global": erank_global,
        "erank_super": float(np.mean(list(erank.values()))) if erank else math.nan,
        "erank_per_superclass": erank,
        "final_eps": summary.get("train/hex/eps"),
        "final_neighbour_frac": summary.get("train/hex/neighbour_frac"),
        "final_local_share": summary.get("train/hex/local_share"),
        "online_acc1": summary.get("val/online_acc1"),
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
    }
    out["knn_all"], out["linear_all"] = knn, lin
    return out


def export_weights(cfg: RunConfig, path: Path, extra: dict[str, Any]) -> Path:
    """The run's final backbone as a released fp16 file with its architecture JSON."""
    from hexssl.evaluate import open_run_encoder
    from hexssl.export import export_release

    enc = open_run_encoder(cfg.run_dir, [])
    aug = enc.transform.augment
    buffers = dict(aug.named_buffers())
    mean = next(v for k, v in buffers.items() if k.endswith("mean")).flatten().tolist()
    std = next(v for k, v in buffers.items() if k.endswith("std")).flatten().tolist()
    data = {
        k: v
        for k, v in config_dict(cfg)["data"].items()
        if k in ("dataset", "root", "image_size", "options")
    }
    return export_release(
        enc.backbone, path, cfg.backbone.name, cfg.backbone.kwargs, cfg.data.image_size,
        mean, std, {**extra, "data": data},
    )  # fmt: skip


def write_curves(run_dir: Path, path: Path) -> Path | None:
    """The emergence curves of a run (CURVE_COLUMNS by step) as a small CSV."""
    from hexssl.eval.report import read_metrics
    from hexssl.train import atomic_write_text

    if not (run_dir / "metrics.csv").is_file():
        return None
    m = read_metrics(run_dir)
    cols = [c for c in CURVE_COLUMNS if c in m]
    if not cols or "step" not in m:
        return None
    table = np.stack([m[c] for c in cols], 1)  # (R, C)
    keep = np.isfinite(table).any(1)
    lines = [",".join(["step", *cols])]
    for step, row in zip(m["step"][keep], table[keep]):
        cells = ["" if not math.isfinite(v) else f"{v:.6g}" for v in row]
        lines.append(",".join([str(int(step)), *cells]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_curves(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a curves CSV written by :func:`write_curves` (empty cells NaN)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {
        name: np.array([float(r[j]) if r[j] else math.nan for r in body])
        for j, name in enumerate(header)
    }


# ------------------------------------------------------------------------- campaign
def git_commit_paths(paths: Sequence[Path], message: str, retries: int = 20) -> bool:
    """``git add`` + ``git commit -- paths``: only these paths, retried while the index is locked.

    Returns False (after printing why) when git refuses for another reason.
    """
    args = [str(p) for p in paths]
    for attempt in range(retries):
        add = subprocess.run(["git", "add", "--", *args], capture_output=True, text=True)
        com = None
        if add.returncode == 0:
            com = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *args], capture_output=True, text=True
            )
            if com.returncode == 0:
                return True
        err = (add.stderr if add.returncode else (com.stderr + com.stdout if com else "")) or ""
        if "index.lock" not in err:
            print(f"[study] git commit failed: {err.strip()}")
            return False
        time.sleep(min(2.0 * (attempt + 1), 15.0))
    print(f"[study] git commit gave up after {retries} tries: the index stayed locked")
    return False


def git_head() -> str | None:
    """The current commit (with ``-dirty`` when tracked files differ), or None outside git
    (no repository, or no git program: a finished run must never crash on provenance)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], capture_output=True)
    except OSError:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode else "")


@dataclass
class Campaign:
    """Where a campaign reads and writes, and what it runs."""

    protocol: Protocol
    runs_dir: Path
    results_dir: Path
    arms: list[str]
    seeds: list[int]
    overrides: list[str]
    git_commit: bool = False

    def result_path(self, arm: str, seed: int) -> Path:
        return self.results_dir / f"{run_name(arm, seed)}.json"

    def claim_path(self, name: str) -> Path:
        """The file a worker holds (its pid inside) while it trains run ``name``."""
        return self.runs_dir / f"{name}.claim"


def run_one(c: Campaign, arm: str, seed: int) -> dict[str, Any]:
    """Train (or resume), evaluate and write the results of one (arm, seed)."""
    from hexssl.train import atomic_write_text

    cfg = arm_config(c.protocol, arm, seed, c.runs_dir, c.overrides)
    restore_inflight(c, run_name(arm, seed), cfg.run_dir)
    seconds = train_run(cfg)
    t0 = time.time()
    metrics = evaluate_run(cfg, c.protocol)
    name = run_name(arm, seed)
    commit = git_head()
    weights = c.results_dir / "weights" / f"{name}.pt"
    export_weights(cfg, weights, {"arm": arm, "seed": seed, "git_commit": commit})
    curves = write_curves(cfg.run_dir, c.results_dir / "curves" / f"{name}.csv")
    result = {
        "arm": arm,
        "seed": seed,
        "label_using": arm in c.protocol.label_using,
        **metrics,
        "seconds": seconds,
        "eval_seconds": round(time.time() - t0, 1),
        "protocol_epochs": c.protocol.epochs,
        "protocol_sha256": c.protocol.sha256,
        "overrides": c.overrides,
        "git_commit": commit,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu",
        "machine": machine_summary(),  # where the run ended (a resumed run spans machines)
        "weights": str(weights.relative_to(c.results_dir)),
        "config": config_dict(cfg),
    }
    out = c.result_path(arm, seed)
    atomic_write_text(out, json.dumps(_finite(result), indent=2) + "\n")
    print(
        f"[study] {name}: knn class {result['knn_class_top1']:.2f} super "
        f"{result['knn_super_top1']:.2f} linear {result['linear_top1']:.2f} -> {out}"
    )
    snapshots = [inflight_path(c, name), inflight_metrics(c, name)]
    tracked = [p for p in snapshots if p.is_file() and is_tracked(p)]
    for p in snapshots:  # the run is done: its session-spanning snapshot goes
        p.unlink(missing_ok=True)
    if c.git_commit:
        paths = [out, weights, weights.with_suffix(".json"), c.results_dir / "protocol.yaml"]
        paths += [curves] if curves is not None else []
        paths += tracked
        git_commit_paths(paths, f"hex_study: {name} ({c.protocol.epochs} epochs)")
    return result


# ---------------------------------------------- checkpoints that outlive a session
def inflight_path(c: Campaign, name: str) -> Path:
    """Where ``--snapshot`` keeps an unfinished run's checkpoint, to be committed."""
    return c.results_dir / "inflight" / f"{name}.inflight.pt"


def inflight_metrics(c: Campaign, name: str) -> Path:
    """The unfinished run's ``metrics.csv`` beside its snapshot (the emergence curves)."""
    return c.results_dir / "inflight" / f"{name}.metrics.csv"


def restore_inflight(c: Campaign, name: str, run_dir: Path) -> bool:
    """Seed a run without a checkpoint (a fresh machine) from its committed snapshot."""
    saved, target = inflight_path(c, name), run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file() or target.is_file() or (run_dir / TRAIN_DONE).is_file():
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    target.parent.mkdir(parents=True)
    shutil.copyfile(saved, target)
    if inflight_metrics(c, name).is_file():
        shutil.copyfile(inflight_metrics(c, name), run_dir / "metrics.csv")
    print(f"[study] {name}: resuming from the snapshot {saved}")
    return True


def snapshot(c: Campaign) -> list[Path]:
    """Copy each unfinished run's ``last.ckpt`` to ``<results>/inflight/`` (and commit it).

    A session's processes and untracked files die with it; run this before it ends so
    the next session, on any machine, resumes the run instead of restarting it.
    """
    saved = []
    for seed in c.seeds:
        for arm in c.arms:
            name = run_name(arm, seed)
            ckpt = c.runs_dir / name / "checkpoints" / "last.ckpt"
            if c.result_path(arm, seed).is_file() or not ckpt.is_file():
                continue
            dest = inflight_path(c, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ckpt, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
            saved.append(dest)
            metrics = c.runs_dir / name / "metrics.csv"
            if metrics.is_file():
                shutil.copyfile(metrics, inflight_metrics(c, name))
                saved.append(inflight_metrics(c, name))
            print(f"[study] snapshot of {name}: {dest}")
    if c.git_commit and saved:
        git_commit_paths(saved, "hex_study: snapshot of unfinished runs")
    return saved


def is_tracked(path: Path) -> bool:
    """Whether git tracks ``path``."""
    try:
        res = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True)
    except OSError:  # no git program
        return False
    return res.returncode == 0


def schedule(c: Campaign) -> list[tuple[str, int]]:
    """The (arm, seed) runs in the order that completes the comparisons soonest.

    The protocol's comparisons are taken in their listed order, and each is completed
    over all seeds (seed by seed, baseline then arm) before the next one starts. So the
    first comparison (HEX paper against SimCLR) has all its paired seeds after its six
    runs, instead of after all arms of seeds 0 and 1. Arms in no comparison come last.
    """
    order: list[tuple[str, int]] = []
    # comparisons are (arm, baseline): the baseline of each seed runs first
    pairs = [[b, a] for a, b in c.protocol.comparisons] + [[a] for a in c.arms]
    for pair in pairs:
        for seed in c.seeds:
            for arm in pair:
                if arm in c.arms and (arm, seed) not in order:
                    order.append((arm, seed))
    return order


def run_campaign(c: Campaign, workers: int = 1) -> list[Path]:
    """Every run of :func:`schedule` without a result; finished runs are skipped.

    ``workers > 1`` trains that many runs at once, each process with an equal share of
    the CPU threads (on our 2 cores, two 1-thread runs train 1.16x the images per second
    of one 2-thread run: ``benchmarks/results/parallel_runs/``). Each process claims the
    next free run of the schedule, so no run is trained twice.
    """
    c.results_dir.mkdir(parents=True, exist_ok=True)
    from hexssl.train import atomic_write_text

    atomic_write_text(c.results_dir / "protocol.yaml", c.protocol.path.read_text())
    for path in remove_stale_claims(c.runs_dir):
        print(f"[study] removed stale claim {path} (its process is gone)", flush=True)
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: own thread pools
        args = (c, threads, os.getpid())
        procs = [ctx.Process(target=campaign_worker, args=args) for _ in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} campaign worker(s) failed (exit codes {failed})")
    else:
        campaign_worker(c, None)
    return [c.result_path(arm, seed) for arm, seed in schedule(c)]


def campaign_worker(c: Campaign, threads: int | None, parent: int | None = None) -> None:
    """Train every free, unfinished run of the schedule in order (one process).

    A spawned worker (``parent`` = the campaign's pid) stops when the campaign process
    is gone, so ``kill <campaign pid>`` never leaves orphans training and holding claims.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if parent is not None:
        exit_with_parent(parent)
    for arm, seed in schedule(c):
        path = c.result_path(arm, seed)
        if path.is_file():
            print(f"[study] skip {run_name(arm, seed)}: {path} exists", flush=True)
            continue
        claim = c.claim_path(run_name(arm, seed))
        if not claim_run(claim):
            owner = claim.read_text().strip() if claim.is_file() else "?"
            print(f"[study] skip {run_name(arm, seed)}: process {owner} trains it", flush=True)
            continue
        try:
            if not path.is_file():  # finished by another worker in the meantime
                run_one(c, arm, seed)
        finally:
            claim.unlink(missing_ok=True)


def exit_with_parent(parent: int, period: float = 2.0) -> threading.Thread:
    """Watch (daemon thread) that ``parent`` is still this process's parent; exit if not.

    The run resumes from its last checkpoint (written atomically) next time; the steps
    since then are lost, as with any kill.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        print(f"[study] worker {os.getpid()}: campaign process {parent} is gone; stopping "
              "(the run resumes from its last checkpoint)", flush=True)  # fmt: skip
        os._exit(3)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def claim_run(claim: Path) -> bool:
    """Take ``claim`` (a file holding this process's pid) unless it exists.

    Atomic: the pid is written to a private file first, then hard-linked into place,
    so another worker never sees a claim without its pid.
    """
    claim.parent.mkdir(parents=True, exist_ok=True)
    tmp = claim.with_name(f"{claim.name}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    try:
        os.link(tmp, claim)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def remove_stale_claims(runs_dir: Path) -> list[Path]:
    """Delete claims whose process is gone (a killed session); before workers start."""
    stale = [p for p in runs_dir.glob("*.claim") if not pid_alive(p.read_text().strip())]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def pid_alive(text: str) -> bool:
    """Whether ``text`` is the pid of a running process."""
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- status
@dataclass
class RunState:
    """Where one (arm, seed) stands, for ``--status``."""

    name: str
    state: str  # done | training (pid N) | resumable | snapshot | todo
    epoch: float  # epochs trained so far (the protocol's length when done; NaN if unknown)
    img_per_s: float  # median of the last logged training speeds; NaN if unknown
    steps_per_epoch: float  # from the logged step / epoch; NaN if unknown


def _progress(metrics: Path) -> tuple[float, float, float]:
    """(epoch, recent img/s, steps per epoch) from a run's metrics.csv."""
    cols = read_curves(metrics)
    epoch, step = cols.get("train/epoch_float"), cols.get("step")
    if epoch is None or step is None:
        return math.nan, math.nan, math.nan
    keep = np.isfinite(epoch) & np.isfinite(step) & (epoch > 0)  # (R,)
    if not keep.any():
        return math.nan, math.nan, math.nan
    e, s = float(epoch[keep][-1]), float(step[keep][-1])
    speed = cols.get("train/img_per_s", np.array([]))
    speed = speed[np.isfinite(speed)][-20:]  # the last 20 logged steps
    return e, float(np.median(speed)) if speed.size else math.nan, s / e  # epoch = step / spe


def run_state(c: Campaign, arm: str, seed: int) -> RunState:
    """Done (result JSON), training (a live claim), resumable (a local checkpoint),
    snapshot (only a committed in-flight checkpoint) or todo."""
    name = run_name(arm, seed)
    if c.result_path(arm, seed).is_file():
        return RunState(name, "done", float(c.protocol.epochs), math.nan, math.nan)
    local = c.runs_dir / name / "metrics.csv"
    metrics = local if local.is_file() else inflight_metrics(c, name)
    epoch, speed, spe = _progress(metrics) if metrics.is_file() else (math.nan,) * 3
    from hexssl.train import last_checkpoint

    claim = c.claim_path(name)
    pid = claim.read_text().strip() if claim.is_file() else ""
    if pid and pid_alive(pid):
        state = f"training (pid {pid})"
    elif last_checkpoint(c.runs_dir / name) is not None:
        state = "resumable"
    elif inflight_path(c, name).is_file():
        state = "snapshot"
    else:
        state, epoch = "todo", 0.0
    return RunState(name, state, epoch, speed, spe)


def campaign_status(c: Campaign) -> list[RunState]:
    """:func:`run_state` of every run, in schedule order."""
    return [run_state(c, arm, seed) for arm, seed in schedule(c)]


def _hours(seconds: float) -> str:
    return "?" if not math.isfinite(seconds) else f"{seconds / 3600:.1f} h"


def format_status(states: list[RunState], epochs: int, batch_size: int) -> str:
    """A table of the runs and the training time left at the speeds last logged.

    Runs without a speed of their own (todo) are costed at the median speed of the
    others; the total is the sum over runs, so divide by the runs trained at once.
    """
    speeds = [s.img_per_s for s in states if math.isfinite(s.img_per_s)]
    spes = [s.steps_per_epoch for s in states if math.isfinite(s.steps_per_epoch)]
    median_speed = float(np.median(speeds)) if speeds else math.nan
    spe = float(np.median(spes)) if spes else math.nan
    lines = ["| run | state | epoch | img/s | left |", "|---|---|---|---|---|"]
    total = 0.0
    for s in states:
        speed = s.img_per_s if math.isfinite(s.img_per_s) else median_speed
        epoch = 0.0 if not math.isfinite(s.epoch) else s.epoch
        left = 0.0 if s.state == "done" else (epochs - epoch) * spe * batch_size / speed
        total += left
        shown = "-" if not math.isfinite(s.epoch) else f"{s.epoch:.1f} / {epochs}"
        rate = "-" if not math.isfinite(s.img_per_s) else f"{s.img_per_s:.0f}"
        lines.append(f"| {s.name} | {s.state} | {shown} | {rate} | {_hours(left)} |")
    done = sum(s.state == "done" for s in states)
    summary = (
        f"{done} of {len(states)} runs done; training left: {_hours(total)} of run-time at "
        "the speeds last logged (divide by the runs trained at once)."
    )
    lines += ["", summary]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- transfer
def _limit(dm: Any, n: int | None, seed: int) -> None:
    """Keep a seeded random ``n`` of each split (cheap tests only)."""
    if n is None:
        return
    for split in ("train_set", "val_set"):
        ds = getattr(dm, split)
        if ds is not None and len(ds) > n:
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
            setattr(dm, split, ds.subset(idx.sort().values))


def transfer(
    results_dir: Path,
    datasets: Sequence[str | Path],
    k: int = 20,
    t: float = 0.07,
    max_samples: int | None = None,
    git_commit: bool = False,
) -> list[Path]:
    """kNN (class and superclass) of every released backbone on other ImageFolder data.

    Each dataset (a directory or .tar.gz with ``hierarchy.csv``) is evaluated with its
    train split as the memory bank and its val split as the queries, decoded at each
    backbone's training resolution and normalised with its training statistics. Results
    go to ``<results>/transfer/<dataset>/<arm>-s<seed>.json``; existing ones are skipped.
    ``max_samples`` caps each split (a seeded random subset; for tests).
    """
    from hexssl.evaluate import Encoder, EvalView, config_from, setup_data
    from hexssl.export import load_release

    written = []
    for root in datasets:
        data_modules: dict[int, Any] = {}  # image size -> the dataset, loaded once
        for weights in sorted((results_dir / "weights").glob("*.pt")):
            out = results_dir / "transfer" / dataset_tag(root) / f"{weights.stem}.json"
            if out.is_file():
                continue
            backbone, meta = load_release(weights)
            tr = meta["eval_transform"]
            size = int(tr["image_size"])
            over = ["data.dataset=imagefolder", f"data.root={root}", f"data.image_size={size}",
                    f"data.options={{image_size: {size}}}"]  # fmt: skip
            cfg = config_from({}, over)
            if size not in data_modules:
                data_modules[size] = setup_data(cfg)
                _limit(data_modules[size], max_samples, 0)
            view = EvalView(build_augmentation("eval", size, tr["mean"], tr["std"]))
            enc = Encoder(cfg, backbone, view, data_modules[size])
            written.append(_write_transfer(out, enc, meta, root, k, t, max_samples))
            if git_commit:
                git_commit_paths(
                    [out], f"hex_study transfer: {weights.stem} on {dataset_tag(root)}"
                )
    return written


def _write_transfer(
    out: Path, enc: Any, meta: dict[str, Any], root: str | Path, k: int, t: float,
    max_samples: int | None,
) -> Path:  # fmt: skip
    from hexssl.evaluate import encoder_features, knn_summary
    from hexssl.train import atomic_write_text

    train, val = encoder_features(enc)
    res = knn_summary(train, val, [k], [t])
    result = {
        "arm": meta.get("arm"),
        "seed": meta.get("seed"),
        "dataset": str(root),
        "n_train": int(train[0].shape[0]),
        "n_val": int(val[0].shape[0]),
        "num_classes": enc.dm.num_classes,
        "num_superclasses": enc.dm.num_superclasses,
        "k": k,
        "t": t,
        "knn_class_top1": res.get("knn_class_top1"),
        "knn_super_top1": res.get("knn_super_top1"),
        "max_samples": max_samples,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(_finite(result), indent=2) + "\n")
    print(f"[study] transfer {out.stem} on {dataset_tag(root)}: class "
          f"{result['knn_class_top1']} super {result['knn_super_top1']}")  # fmt: skip
    return out
