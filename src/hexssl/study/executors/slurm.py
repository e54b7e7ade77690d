"""The SLURM executor: every (arm, seed) of a study is one task of a SLURM job array.

``hexssl study PROTOCOL --executor slurm`` writes one batch script per submission into
``<results>/slurm/`` and submits it with ``sbatch`` as a job array, one task per run that
is neither done nor queued or running. The submitting process may exit at once: every
submission is a line of ``<results>/slurm/submissions.jsonl`` (job id, runs in task
order, script, sbatch flags), and status reads those lines, ``scontrol show job -o``
(``JobState``, ``ExitCode``, ``Restarts``) and the results folder. ``sacct`` is never
asked: many clusters, and our CI's, keep no accounting database.

Why plain ``sbatch`` and not submitit: submitit pickles a Python callable per job and
reads job states through ``sacct``, which reports every job ``UNKNOWN`` without an
accounting database (and waiting on a job that died without a result then never ends).
A study's job is already a command (``python -m hexssl.study.job RESULTS ARM SEED``),
so a short bash script per array, readable and resubmittable by hand, is all it needs.

Each task:

* appends its output to ``<results>/logs/<arm>-s<seed>.log`` (SLURM's own messages,
  e.g. a cancellation, go to ``<results>/slurm/logs/<job>_<task>.out``);
* uses ``OMP_NUM_THREADS = SLURM_CPUS_PER_TASK`` (1 when not set): the CPUs it was given;
* gets ``--signal=B:USR1@<signal>`` and runs the job with ``--requeue``, so the advance
  warning saves ``last.ckpt``, requeues the task (``scontrol requeue``, through
  ``trainer.requeue``) and the next start resumes it exactly;
* ``exec``\\ s python (or ``srun``), which then receives the signal itself: bash would
  defer a trap until its foreground child ended;
* with ``trainer.devices: N`` (N > 1) asks for ``--ntasks-per-node=N`` (and N GPUs per
  node unless the run is on the CPU) and starts ``srun python -m hexssl.study.job ...``:
  one process per device, ranks from Lightning's SLURM environment (DDP).

Resources: a protocol's ``slurm:`` section, overridden key by key by ``--slurm
KEY=VALUE`` (:data:`OPTION_HELP` lists the keys).

Example:
    >>> opts = parse_options({"time": "2:00:00"}, {"partition": "gpu", "cpus_per_task": "8"})
    >>> resource_flags(opts, RunShape(tasks_per_node=1, gpus_per_node=1))
    ['--partition=gpu', '--time=2:00:00', '--cpus-per-task=8', '--ntasks-per-node=1', \
'--gpus-per-node=1', '--signal=B:USR1@120']
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexssl.errors import ConfigError
from hexssl.study.executors.base import EXIT_BUSY, Executor, RunKey, RunRecord
from hexssl.study.folder import StudyFolder
from hexssl.study.protocol import arm_config, run_name

SLURM_DIR = "slurm"
SUBMISSIONS = "submissions.jsonl"
DEFAULT_SIGNAL_SECONDS = 120  # USR1 this long before the time limit: time to save a step
OPTION_HELP = {
    "partition": "sbatch --partition",
    "time": "time limit per run (sbatch --time, e.g. 2:00:00)",
    "gpus": "GPUs per node for each run (default: trainer.devices, 0 for CPU runs)",
    "cpus_per_task": "CPUs per process (sbatch --cpus-per-task; also its torch threads)",
    "mem": "memory per node (sbatch --mem, e.g. 32G)",
    "account": "sbatch --account",
    "signal": f"seconds before the time limit for SIGUSR1 (default {DEFAULT_SIGNAL_SECONDS})",
    "extra": "further sbatch flags, as one string (e.g. '--qos=high --constraint=a100')",
}
ALIASES = {"cpus": "cpus_per_task", "cpus-per-task": "cpus_per_task"}
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                 "SUSPENDED", "RESV_DEL_HOLD", "RESIZING"}  # fmt: skip
RUNNING_STATES = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}
SLURM_TIMEOUT = 60  # seconds for one sbatch or scontrol call


@dataclass(frozen=True)
class SlurmOptions:
    """What each run asks SLURM for (see :data:`OPTION_HELP`)."""

    partition: str | None = None
    time: str | None = None
    gpus: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    signal: int = DEFAULT_SIGNAL_SECONDS
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunShape:
    """Processes and GPUs of one run; runs of one shape share a job array."""

    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0


@dataclass
class TaskState:
    """One array task as ``scontrol show job -o`` reports it."""

    state: str
    exit_code: str = "0:0"
    restarts: int = 0
    stdout: str = ""


@dataclass
class Submission:
    """One ``sbatch`` of a job array: ``runs[i]`` is array task ``i`` of ``job``."""

    job: str
    runs: list[RunKey]
    script: str
    flags: list[str] = field(default_factory=list)
    time: float = 0.0

    def task(self, run: RunKey) -> str:
        """The array task id of ``run`` in this submission (``12_3``)."""
        return f"{self.job}_{self.runs.index(run)}"


# --------------------------------------------------------------------------- options
def _int_option(key: str, value: Any, low: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if number < low or str(value).strip() != str(number):
        raise ConfigError(f"slurm option {key}={value!r}: expected a whole number >= {low}")
    return number


def _optional_int(text: Mapping[str, str], key: str, low: int) -> int | None:
    return None if key not in text else _int_option(key, text[key], low)


def parse_options(protocol: Mapping[str, Any], given: Mapping[str, str]) -> SlurmOptions:
    """The options of a protocol's ``slurm:`` section, ``given`` (``--slurm``) winning.

    ``cpus``, ``cpus-per-task`` and ``cpus_per_task`` are the same key.

    Raises:
        ConfigError: an unknown key (with the valid ones) or a bad value.
    """
    merged = {ALIASES.get(k, k): v for k, v in {**protocol, **given}.items()}
    for key in merged:
        if key not in OPTION_HELP:
            close = difflib.get_close_matches(key, list(OPTION_HELP), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown slurm option {key!r}; {hint}valid: {', '.join(OPTION_HELP)}"
            )
    text = {k: str(v) for k, v in merged.items() if v is not None and k != "extra"}
    extra = merged.get("extra") or ()
    return SlurmOptions(
        partition=text.get("partition"),
        time=text.get("time"),
        gpus=_optional_int(text, "gpus", 0),
        cpus_per_task=_optional_int(text, "cpus_per_task", 1),
        mem=text.get("mem"),
        account=text.get("account"),
        signal=_int_option("signal", text.get("signal", DEFAULT_SIGNAL_SECONDS), 1),
        extra=tuple(shlex.split(extra) if isinstance(extra, str) else map(str, extra)),
    )


def run_shape(devices: Any, num_nodes: int, accelerator: str, gpus: int | None) -> RunShape:
    """Processes per node from ``trainer.devices`` (an int, a list of ids or ``auto``: 1);
    GPUs per node: ``gpus`` if given, else one per process unless the run is on the CPU.

    Example:
        >>> run_shape(4, 1, "gpu", None), run_shape(2, 1, "cpu", None).gpus_per_node
        (RunShape(nodes=1, tasks_per_node=4, gpus_per_node=4), 0)
    """
    if isinstance(devices, (list, tuple)):
        tasks = len(devices)
    elif isinstance(devices, int) or str(devices).isdigit():
        tasks = max(1, int(devices))
    else:
        tasks = 1
    if gpus is None:
        gpus = 0 if accelerator == "cpu" else tasks
    return RunShape(nodes=max(1, num_nodes), tasks_per_node=tasks, gpus_per_node=gpus)


def resource_flags(opts: SlurmOptions, shape: RunShape) -> list[str]:
    """The sbatch flags for one run of ``shape`` (array, name and output flags apart)."""
    named = {"partition": opts.partition, "time": opts.time, "account": opts.account,
             "mem": opts.mem, "cpus-per-task": opts.cpus_per_task}  # fmt: skip
    flags = [f"--{key}={value}" for key, value in named.items() if value is not None]
    if shape.nodes > 1:
        flags.append(f"--nodes={shape.nodes}")
    flags.append(f"--ntasks-per-node={shape.tasks_per_node}")
    if shape.gpus_per_node:
        flags.append(f"--gpus-per-node={shape.gpus_per_node}")
    return [*flags, f"--signal=B:USR1@{opts.signal}"]


# ---------------------------------------------------------------------- the script
def batch_script(folder: StudyFolder, runs: Sequence[RunKey], shape: RunShape) -> str:
    """The bash script of one array: task ``i`` runs ``runs[i]`` (module docstring)."""
    here = StudyFolder(folder.path.resolve())  # absolute paths: the script outlives a cwd
    cases = []
    for i, (arm, seed) in enumerate(runs):
        job = shlex.join([*here.job_command(arm, seed), "--requeue"])
        cases.append(f"  {i}) log={shlex.quote(str(here.log_path(arm, seed)))}; run=({job}) ;;")
    srun = "srun --kill-on-bad-exit=1 " if shape.nodes * shape.tasks_per_node > 1 else ""
    return "\n".join([
        "#!/bin/bash",
        "# hexssl study, SLURM executor: array task i runs case i (one study run each).",
        "# Submitted with the sbatch flags of its line in submissions.jsonl.",
        "set -eu",
        'case "$SLURM_ARRAY_TASK_ID" in',
        *cases,
        '  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        'mkdir -p "$(dirname "$log")"',
        'exec >>"$log" 2>&1',
        'echo "[study] $(date "+%F %T"): slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}'
        ' on $(hostname), start $((${SLURM_RESTART_COUNT:-0} + 1))"',
        "# torch threads: the CPUs this task was given",
        "threads=${SLURM_CPUS_PER_TASK:-1}",
        'export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"',
        "# exec: python (or srun, which forwards it to every rank) receives SIGUSR1 itself;",
        "# bash would defer a trap until its foreground child ended",
        f'exec {srun}"${{run[@]}}"',
        "",
    ])  # fmt: skip


# ------------------------------------------------------------------ submissions
def slurm_dir(folder: StudyFolder) -> Path:
    """``<results>/slurm``: batch scripts, ``submissions.jsonl``, SLURM's own output."""
    return folder.path / SLURM_DIR


def read_submissions(folder: StudyFolder) -> list[Submission]:
    """Every submission of this study, oldest first."""
    path = slurm_dir(folder) / SUBMISSIONS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs = [(str(arm), int(seed)) for arm, seed in row["runs"]]
            out.append(Submission(str(row["job"]), runs, row["script"], row["flags"], row["time"]))
    return out


def append_submission(folder: StudyFolder, sub: Submission) -> None:
    """Record a submission (one JSON line, appended and flushed before anything else)."""
    row = {"job": sub.job, "runs": [list(r) for r in sub.runs], "script": sub.script,
           "flags": sub.flags, "time": sub.time}  # fmt: skip
    with (slurm_dir(folder) / SUBMISSIONS).open("a") as f:
        f.write(json.dumps(row) + "\n")


def latest_tasks(folder: StudyFolder) -> dict[RunKey, str]:
    """Each submitted run's most recent array task id (``12_3``)."""
    return {run: sub.task(run) for sub in read_submissions(folder) for run in sub.runs}


# --------------------------------------------------------------------- scontrol
def _field(line: str, key: str) -> str | None:
    match = re.search(rf"(?:^|\s){key}=(\S*)", line)
    return match.group(1) if match else None


def array_task_ids(spec: str) -> list[int]:
    """Task ids of ``scontrol``'s ``ArrayTaskId`` (``3``, ``0-5%2``, ``1,4-7:3``).

    Example:
        >>> array_task_ids("0-3%2"), array_task_ids("1,4-9:3")
        ([0, 1, 2, 3], [1, 4, 7])
    """
    ids: list[int] = []
    for part in spec.split("%")[0].split(","):
        span, _, step = part.partition(":")
        low, _, high = span.partition("-")
        ids += range(int(low), int(high or low) + 1, int(step or 1))
    return ids


def parse_jobs(text: str) -> dict[str, TaskState]:
    """Array tasks (``12_3``) of ``scontrol show job -o`` output, one job per line."""
    states = {}
    for line in text.splitlines():
        job, tasks = _field(line, "ArrayJobId"), _field(line, "ArrayTaskId")
        state = _field(line, "JobState")
        if not (job and tasks and state):
            continue  # not an array task
        restarts = int(_field(line, "Restarts") or 0)
        info = TaskState(state, _field(line, "ExitCode") or "0:0", restarts,
                         _field(line, "StdOut") or "")  # fmt: skip
        for task in array_task_ids(tasks):
            states[f"{job}_{task}"] = info
    return states


def scontrol_jobs(jobs: Sequence[str]) -> dict[str, TaskState]:
    """The tasks of these array jobs that SLURM still knows (finished ones stay for
    ``MinJobAge``, 300 s by default; after that a job is unknown).

    Raises:
        ConfigError: ``scontrol`` is missing or cannot reach the controller.
    """
    states: dict[str, TaskState] = {}
    for job in jobs:
        try:
            res = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                                 text=True, timeout=SLURM_TIMEOUT)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ConfigError(f"cannot read SLURM job {job}: scontrol: {err}") from None
        if res.returncode != 0 and "Invalid job id" not in res.stderr:
            said = res.stderr.strip().splitlines()[:1] or ["no message"]
            raise ConfigError(f"cannot read SLURM job {job}: scontrol said: {said[0]}")
        states.update(parse_jobs(res.stdout))
    return states


def task_record(
    folder: StudyFolder, run: RunKey, task: str, info: TaskState | None
) -> RunRecord | None:
    """What SLURM's view of ``run``'s task ``task`` means for the study (None: nothing)."""
    log = folder.log_path(*run)
    if folder.result_path(*run).is_file():
        return None  # done meanwhile
    if info is None:
        return RunRecord("failed", f"slurm job {task} gone from SLURM, no result", log)
    again = f", restarted {info.restarts}x" if info.restarts else ""
    if info.state in QUEUED_STATES:
        return RunRecord("queued", f"slurm job {task} {info.state}{again}")
    if info.state in RUNNING_STATES:
        return RunRecord("running", f"slurm job {task} {info.state}{again}")
    if info.exit_code.split(":")[0] == str(EXIT_BUSY):
        return None  # another live process holds the run: the folder shows its lock
    return RunRecord("failed", f"slurm job {task} {info.state} (exit {info.exit_code})", log)


# ---------------------------------------------------------------------- sbatch
def sbatch(flags: Sequence[str], target: str) -> str:
    """Run ``sbatch --parsable FLAGS TARGET`` (a script, or ``--wrap=...``); the job id.

    Raises:
        ConfigError: sbatch refused (its own message and our flags, on one line).
    """
    try:
        res = subprocess.run(["sbatch", "--parsable", *flags, target], capture_output=True,
                             text=True, timeout=SLURM_TIMEOUT)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"sbatch failed: {err}") from None
    if res.returncode != 0:
        lines = [ln.removeprefix("sbatch: error: ").strip() for ln in res.stderr.splitlines()]
        said = "; ".join(ln for ln in lines if ln) or f"exit {res.returncode}, no message"
        shown = shlex.join(f for f in flags if f != "--test-only")
        raise ConfigError(f"sbatch refused the job: {said} (flags: {shown})")
    return res.stdout.strip().split(";")[0]


class SlurmExecutor(Executor):
    """Submits each run as a task of a SLURM job array (see the module docstring).

    Example:
        >>> SlurmExecutor({"partition": "gpu", "time": "4:00:00"}).name
        'slurm'
    """

    name = "slurm"

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        parse_options({}, self.options)  # a bad --slurm key fails before anything else

    def check(self, folder: StudyFolder) -> None:
        """``sbatch`` and ``scontrol`` on PATH; the options valid."""
        for tool in ("sbatch", "scontrol"):
            if shutil.which(tool) is None:
                raise ConfigError(
                    f"--executor slurm needs `{tool}` on PATH (run it on a SLURM login node, "
                    "or use --executor local)"
                )
        if folder.protocol_path.is_file():
            parse_options(folder.protocol().slurm, self.options)

    def launch(self, folder: StudyFolder, runs: Sequence[RunKey], workers: int) -> int:
        """Submit ``runs`` (one array per run shape, at most ``workers`` tasks at once
        when ``workers`` is smaller than the array) and return 0 without waiting.

        Every array is checked with ``sbatch --test-only`` before the first is submitted,
        so a refused option submits nothing.
        """
        protocol = folder.protocol()
        opts = parse_options(protocol.slurm, self.options)
        groups: dict[RunShape, list[RunKey]] = {}
        for arm, seed in runs:
            t = arm_config(protocol, arm, seed, folder.runs_dir()).trainer
            shape = run_shape(t.devices, t.num_nodes, t.accelerator, opts.gpus)
            groups.setdefault(shape, []).append((arm, seed))
        plans = [(shape, group, self._flags(folder, opts, shape, len(group), workers))
                 for shape, group in groups.items()]  # fmt: skip
        for _, _, flags in plans:
            sbatch(["--test-only", *flags], "--wrap=true")
        for shape, group, flags in plans:
            self._submit(folder, group, shape, flags)
        return 0

    def _flags(
        self, folder: StudyFolder, opts: SlurmOptions, shape: RunShape, n: int, workers: int
    ) -> list[str]:
        throttle = f"%{workers}" if 0 < workers < n else ""
        out = slurm_dir(folder).resolve() / "logs" / "%A_%a.out"
        return [f"--job-name=hexssl-{folder.path.resolve().name}", f"--array=0-{n - 1}{throttle}",
                f"--output={out}", "--open-mode=append", "--requeue", f"--chdir={Path.cwd()}",
                *resource_flags(opts, shape), *opts.extra]  # fmt: skip

    def _submit(
        self, folder: StudyFolder, runs: list[RunKey], shape: RunShape, flags: list[str]
    ) -> None:
        """Write the array's script, submit it, record the job id at once."""
        (slurm_dir(folder) / "logs").mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        script = slurm_dir(folder) / f"array-{stamp}-{len(read_submissions(folder))}.sh"
        script.write_text(batch_script(folder, runs, shape))
        job = sbatch(flags, str(script))
        append_submission(folder, Submission(job, runs, str(script), flags, time.time()))
        names = " ".join(run_name(*run) for run in runs)
        print(f"[study] submitted SLURM job array {job}: {names} (logs in "
              f"{folder.path / 'logs'})", flush=True)  # fmt: skip

    def records(self, folder: StudyFolder, runs: Sequence[RunKey]) -> dict[RunKey, RunRecord]:
        """Queued, running or failed, from each run's latest task and ``scontrol``."""
        tasks = latest_tasks(folder)
        wanted = {run: tasks[run] for run in runs if run in tasks}
        if not wanted:
            return {}
        states = scontrol_jobs(sorted({task.split("_")[0] for task in wanted.values()}))
        out = {}
        for run, task in wanted.items():
            record = task_record(folder, run, task, states.get(task))
            if record is not None:
                out[run] = record
        return out
