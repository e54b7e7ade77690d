"""The study runner: train, evaluate and record every (arm, seed) of a protocol, resumably.

:func:`run_study` takes the runs in :func:`~hexssl.study.protocol.schedule` order. A run
with a result JSON is skipped; one with a ``last.ckpt`` resumes from it; any other
starts in a clean directory. Each finished run writes at once:

* ``<results>/<arm>-s<seed>.json``: the metrics, the config and the provenance;
* ``<results>/weights/<arm>-s<seed>.safetensors`` + ``.json``: the backbone as fp16 with
  its architecture (evaluate with ``hexssl knn FILE.safetensors --data ...``);
* ``<results>/curves/<arm>-s<seed>.csv``: the emergence curves (purity, eps by step).

``hexssl report <results> --study`` rebuilds the tables from the JSON files. The runner
trains one run at a time in this process and writes only under the two folders it is
given; spreading runs over processes or machines is the caller's business.

Example:
    >>> from hexssl.study import Study, load_protocol
    >>> p = load_protocol("benchmarks/hex_study_protocol.yaml")
    >>> study = Study(p, Path("runs/s"), Path("results/s"), ["simclr"], [0], [])
    >>> study.result_path("simclr", 0).name
    'simclr-s0.json'
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from hexssl.config import RunConfig
from hexssl.config import to_dict as config_dict
from hexssl.run.atomic import atomic_write_text
from hexssl.run.lock import check_unlocked, launcher_rank_zero
from hexssl.run.machine import machine_summary
from hexssl.run.train import last_checkpoint, pretrain
from hexssl.study.evaluation import evaluate_run, export_weights, finite, write_curves
from hexssl.study.folder import StudyFolder, fix_protocol
from hexssl.study.protocol import Protocol, arm_config, resolve_protocol, run_name, schedule


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

    run_dir = cfg.run_dir
    done = run_dir / TRAIN_DONE
    if done.is_file():
        return float(json.loads(done.read_text())["seconds"])
    check_unlocked(run_dir)  # never clean the folder of a run another process trains
    ckpt = last_checkpoint(run_dir)
    first = launcher_rank_zero()  # under srun every rank runs this; only the first writes
    if ckpt is None and run_dir.exists() and first:
        log(f"[study] {cfg.name}: no checkpoint in {run_dir}; starting again in a clean dir")
        shutil.rmtree(run_dir)
    if first:
        log(f"[study] {cfg.name}: {'resuming from ' + str(ckpt) if ckpt else 'training'}")
    cfg = copy.deepcopy(cfg)
    cfg.resume = "auto" if ckpt is not None else None
    clock = WallClock()
    pretrain(cfg, [clock])
    seconds = round(clock.total, 1)
    if first:
        atomic_write_text(done, json.dumps({"seconds": seconds}))
    return seconds


@dataclass
class Study:
    """Where a study reads and writes, and which of the protocol's runs it trains."""

    protocol: Protocol
    runs_dir: Path
    results_dir: Path
    arms: list[str]
    seeds: list[int]
    overrides: list[str]
    # SLURM jobs (``python -m hexssl.study.job ... --requeue``): on SIGUSR1 save and
    # requeue the job (trainer.requeue); a placement setting, not part of the protocol
    requeue: bool = False

    def result_path(self, arm: str, seed: int) -> Path:
        """``<results>/<arm>-s<seed>.json``: present once the run is trained and evaluated."""
        return self.results_dir / f"{run_name(arm, seed)}.json"

    def schedule(self) -> list[tuple[str, int]]:
        """This study's runs in the order that completes the comparisons soonest."""
        return schedule(self.protocol, self.arms, self.seeds)

    def config(self, arm: str, seed: int) -> RunConfig:
        """The complete config of run (arm, seed) under ``runs_dir``."""
        cfg = arm_config(self.protocol, arm, seed, self.runs_dir, self.overrides)
        cfg.trainer.requeue = cfg.trainer.requeue or self.requeue
        return cfg


def run_one(
    study: Study, arm: str, seed: int, provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train (or resume), evaluate and write the results of one (arm, seed).

    ``provenance`` (e.g. the caller's source revision) goes into the result JSON and the
    released weights' metadata as it is given.
    """
    extra = dict(provenance or {})
    cfg = study.config(arm, seed)
    seconds = train_run(cfg)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # a run of several processes (srun): training's group ends; the first evaluates
        # alone (collectives in the evaluation, e.g. HEX's threshold, then stay local)
        torch.distributed.destroy_process_group()
    if not launcher_rank_zero():
        return {}
    t0 = time.time()
    metrics = evaluate_run(cfg, study.protocol)
    name = run_name(arm, seed)
    weights = study.results_dir / "weights" / f"{name}.safetensors"
    export_weights(cfg, weights, {"arm": arm, "seed": seed, **extra})
    write_curves(cfg.run_dir, study.results_dir / "curves" / f"{name}.csv")
    result = {
        "arm": arm,
        "seed": seed,
        "label_using": arm in study.protocol.label_using,
        **metrics,
        "seconds": seconds,
        "eval_seconds": round(time.time() - t0, 1),
        "protocol_epochs": study.protocol.epochs,
        "protocol_sha256": study.protocol.sha256,
        "overrides": study.overrides or study.protocol.sources.get("overrides", []),
        **extra,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu",
        "machine": machine_summary(),  # where the run ended (a resumed run spans machines)
        "weights": str(weights.relative_to(study.results_dir)),
        "config": config_dict(cfg),
    }
    out = study.result_path(arm, seed)
    atomic_write_text(out, json.dumps(finite(result), indent=2) + "\n")
    print(
        f"[study] {name}: knn class {result['knn_class_top1']:.2f} super "
        f"{result['knn_super_top1']:.2f} linear {result['linear_top1']:.2f} -> {out}"
    )
    return result


def start(study: Study) -> Study:
    """Fix the study's resolved protocol in its results folder; the study to run.

    The protocol (with the study's overrides) is resolved and written to
    ``<results>/protocol.yaml`` the first time; a folder holding another protocol is
    refused (:func:`hexssl.study.folder.fix_protocol`). The returned study reads its
    runs' configs from the resolved protocol.
    """
    resolved = resolve_protocol(study.protocol, [], study.overrides)
    fix_protocol(StudyFolder(study.results_dir), resolved, study.runs_dir)
    return Study(resolved, study.runs_dir, study.results_dir, study.arms, study.seeds, [])


def run_study(study: Study, provenance: dict[str, Any] | None = None) -> list[Path]:
    """Every run of the schedule without a result, one after another in this process.

    Finished runs are skipped. Returns the result paths of all the study's runs, in
    schedule order. (``hexssl study`` runs each in its own process instead, through an
    executor: :mod:`hexssl.study.executors`.)
    """
    study = start(study)
    for arm, seed in study.schedule():
        path = study.result_path(arm, seed)
        if path.is_file():
            print(f"[study] skip {run_name(arm, seed)}: {path} exists", flush=True)
            continue
        run_one(study, arm, seed, provenance)
    return [study.result_path(arm, seed) for arm, seed in study.schedule()]
