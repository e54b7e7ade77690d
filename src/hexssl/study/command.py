"""``hexssl study``: plan a study, then run it, show its status or its plan.

:func:`plan_study` resolves the protocol (a file or a shipped name) with the dataset
presets and ``--set`` overrides, checks it against the results folder and the selection
of arms and seeds, and picks the executor; nothing is written. :func:`run_planned` fixes
the protocol in the results folder and hands the runs that are neither done, running nor
queued to the executor. :func:`dry_run_text` and :func:`status_text` only read.

Example:
    >>> plan = plan_study("hex-vs-simclr", ["synthetic-cpu"], seeds=[0, 1])
    >>> plan.folder.path.as_posix(), plan.runs[:2]
    ('studies/hex-vs-simclr-synthetic-cpu', [('simclr', 0), ('simclr-hex-paper', 0)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hexssl.config import dump_config, find_config, parse_override
from hexssl.errors import ConfigError
from hexssl.study.executors import EXECUTORS, Executor, RunKey
from hexssl.study.folder import StudyFolder, check_same_protocol, fix_protocol
from hexssl.study.protocol import (
    Protocol,
    arm_config,
    check_arm,
    check_seeds,
    frozen_text,
    load_protocol,
    resolve_protocol,
    run_name,
    schedule,
    split_overrides,
)
from hexssl.study.status import RunStatus, format_status, study_status

STUDIES_DIR = Path("studies")  # default parent of results folders (relative to the cwd)


@dataclass
class StudyPlan:
    """A resolved study, ready to run: protocol, folders, runs and executor."""

    protocol: Protocol
    folder: StudyFolder
    runs_dir: Path
    runs: list[RunKey]
    executor: Executor
    workers: int


def parse_options(items: Sequence[str], flag: str) -> dict[str, str]:
    """``["partition=gpu", "time=4:00:00"]`` -> a dict; a malformed item is refused."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE items, got {item!r}")
        out[key] = value
    return out


def default_results(protocol: Protocol, datasets: Sequence[str]) -> Path:
    """``studies/<protocol>[-<dataset>...]``: where a study's results go by default."""
    parts = [protocol.path.stem, *(Path(d).stem for d in datasets)]
    return STUDIES_DIR / "-".join(parts)


def make_executor(name: str, options: dict[str, str]) -> Executor:
    """The registered executor ``name`` with its options; unknown names are refused."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](options)


def plan_study(
    protocol: str | Path,
    datasets: Sequence[str] = (),
    *,
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    results: str | Path | None = None,
    runs_dir: str | Path | None = None,
    executor: str | None = None,
    executor_options: dict[str, str] | None = None,
    workers: int | None = None,
) -> StudyPlan:
    """Resolve and check everything a study needs; write nothing (see the module doc).

    ``workers``: runs at once; by default what the folder's last launch used with the
    same executor, else 1 locally and every run for an executor that submits to a
    scheduler (a SLURM array is not throttled unless asked).
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    for d in datasets:
        find_config(d)  # an unknown preset fails here, naming the presets
    for text in overrides:
        parse_override(text)
    study_over, run_over = split_overrides(overrides)
    resolved = resolve_protocol(load_protocol(protocol, overrides=study_over), datasets, run_over)
    folder = StudyFolder(results if results is not None else default_results(resolved, datasets))
    check_same_protocol(folder, resolved)
    for arm in arms or []:
        check_arm(resolved, arm)
    chosen_seeds = list(seeds) if seeds is not None else resolved.seeds
    check_seeds(chosen_seeds)
    runs = schedule(resolved, list(arms or resolved.arms), chosen_seeds)
    record = folder.record()  # study.json
    runs_path = Path(runs_dir) if runs_dir is not None else folder.runs_dir(record)
    # the executor that placed the study's runs (study.json) unless another is asked
    # for: `--status` or a rerun of a SLURM study must see its queued jobs
    executor = executor or str(record.get("executor") or "local")
    ex = make_executor(executor, executor_options or {})
    ex.check(folder)
    if workers is None and executor == record.get("executor") and record.get("workers"):
        workers = int(record["workers"])  # as launched: the status's estimate, a rerun
    if workers is None:
        workers = 1 if executor == "local" else max(1, len(runs))
    return StudyPlan(resolved, folder, runs_path, runs, ex, workers)


def dry_run_text(plan: StudyPlan) -> str:
    """The plan: where results go, each run and its state, the resolved configs."""
    p, folder = plan.protocol, plan.folder
    states = {(s.arm, s.seed): s.state for s in _states(plan)}
    lines = [
        f"study {p.name} (sha256 {p.sha256[:12]}), {len(plan.runs)} runs, executor "
        f"{plan.executor.name}, {plan.workers} at once",
        f"results: {folder.path}  (protocol.yaml, <arm>-s<seed>.json, weights/, curves/, logs/)",
        f"runs:    {plan.runs_dir}  (checkpoints, metrics.csv)",
        "",
        *(f"  {run_name(a, s):<32} {states[(a, s)]}" for a, s in plan.runs),
        "",
        "Nothing was written (--dry-run). The resolved protocol, as it would be fixed in "
        f"{folder.protocol_path}:",
        "",
        frozen_text(p),
    ]
    arm, seed = plan.runs[0] if plan.runs else (next(iter(p.arms)), p.seeds[0])
    cfg = arm_config(p, arm, seed, plan.runs_dir)
    lines += [f"# the complete config of {run_name(arm, seed)}:", dump_config(cfg)]
    return "\n".join(lines)


def _states(plan: StudyPlan) -> list[RunStatus]:
    return study_status(plan.folder, plan.protocol, plan.runs, plan.executor)


def status_text(plan: StudyPlan) -> str:
    """The ``--status`` table of the plan's runs."""
    head = f"study {plan.protocol.name} in {plan.folder.path} (executor {plan.executor.name})\n"
    return head + format_status(_states(plan), plan.workers)


def run_planned(plan: StudyPlan) -> int:
    """Fix the protocol in the results folder, then launch every run still to do.

    Runs that are done, running (a live lock) or queued with the executor (a pending
    SLURM job) are left alone; failed and unstarted ones are launched. Returns the
    executor's exit status.
    """
    fix_protocol(plan.folder, plan.protocol, plan.runs_dir)
    plan.folder.write_record(executor=plan.executor.name, workers=plan.workers)
    states = _states(plan)
    # failed ones again; queued ones unless the executor already holds them (a pending job)
    todo = [(s.arm, s.seed) for s in states
            if s.state == "failed" or (s.state == "queued" and not s.by_executor)]  # fmt: skip
    done = sum(s.state == "done" for s in states)
    busy = len(states) - done - len(todo)
    print(f"[study] {plan.protocol.name}: {len(states)} runs, {done} done, {busy} running or "
          f"queued elsewhere, {len(todo)} to run -> {plan.folder.path}", flush=True)  # fmt: skip
    if not todo:
        return 0
    return plan.executor.launch(plan.folder, todo, plan.workers)
