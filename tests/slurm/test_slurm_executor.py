"""The SLURM executor's parts that need no cluster: options, the batch script, reading
``scontrol``, and the refusals of ``hexssl study --executor slurm``."""

from __future__ import annotations

import pytest

from hexssl.errors import ConfigError
from hexssl.study.executors.slurm import (
    RunShape,
    TaskState,
    batch_script,
    parse_jobs,
    parse_options,
    read_submissions,
    resource_flags,
    run_shape,
    task_record,
)
from hexssl.study.folder import StudyFolder
from tests.slurm.studies import study
from tests.subproc import run_limited

# two lines of `scontrol show job -o` on the test cluster (shortened): a running task and
# the pending rest of an array, collapsed into one line
SCONTROL = (
    "JobId=41 ArrayJobId=40 ArrayTaskId=0 JobName=hexssl-c JobState=RUNNING Reason=None "
    "Requeue=1 Restarts=1 BatchFlag=1 ExitCode=0:0 StdOut=/r/slurm/logs/40_0.out Power=\n"
    "JobId=40 ArrayJobId=40 ArrayTaskId=1-3%2 JobName=hexssl-c JobState=PENDING "
    "Reason=JobArrayTaskLimit Restarts=0 ExitCode=0:0 StdOut=/r/slurm/logs/40_%a.out\n"
    "JobId=7 JobName=wrap JobState=COMPLETED ExitCode=0:0\n"  # not an array: not ours
)


def test_options_come_from_the_protocol_and_the_command_line_wins():
    opts = parse_options({"partition": "gpu", "time": "1:00:00", "cpus": 4}, {"time": "8:00:00"})
    assert (opts.partition, opts.time, opts.cpus_per_task) == ("gpu", "8:00:00", 4)
    extra = parse_options({}, {"extra": "--qos=high --constraint=a100", "cpus-per-task": "2"})
    assert extra.extra == ("--qos=high", "--constraint=a100") and extra.cpus_per_task == 2
    assert parse_options({"extra": ["--exclusive"]}, {}).extra == ("--exclusive",)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"partiton": "gpu"}, "unknown slurm option 'partiton'; did you mean 'partition'?"),
        ({"gpus": "two"}, "slurm option gpus='two': expected a whole number >= 0"),
        ({"cpus": "0"}, "slurm option cpus_per_task='0': expected a whole number >= 1"),
        ({"signal": "1.5"}, "slurm option signal='1.5': expected a whole number >= 1"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(given, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_options({}, given)


def test_devices_become_tasks_and_gpus_per_node():
    assert run_shape(4, 1, "gpu", None) == RunShape(1, 4, 4)
    assert run_shape([0, 1], 2, "auto", None) == RunShape(2, 2, 2)
    assert run_shape(2, 1, "cpu", None) == RunShape(1, 2, 0)  # gloo on CPUs: no GPU asked
    assert run_shape("auto", 1, "gpu", 2) == RunShape(1, 1, 2)  # gpus= wins
    flags = resource_flags(parse_options({}, {"mem": "32G", "signal": "300"}), RunShape(2, 4, 4))
    assert flags == ["--mem=32G", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                     "--signal=B:USR1@300"]  # fmt: skip


def test_the_batch_script_execs_each_runs_job_and_srun_for_several_processes(tmp_path):
    folder = StudyFolder(tmp_path / "my results")  # a space: every path is quoted
    runs = [("simclr", 0), ("simclr-hex", 1)]
    one = batch_script(folder, runs, RunShape())
    for i, (arm, seed) in enumerate(runs):
        log = f"'{folder.log_path(arm, seed)}'"
        job = f"-m hexssl.study.job '{folder.path}' {arm} {seed} --requeue"
        assert f"  {i}) log={log}; run=(" in one and job in one
    assert 'exec "${run[@]}"' in one  # python itself receives SIGUSR1, no bash in between
    assert 'exec srun --kill-on-bad-exit=1 "${run[@]}"' in batch_script(
        folder, runs, RunShape(1, 2, 0)
    )
    script = tmp_path / "array.sh"
    script.write_text(one)
    checked = run_limited(["bash", "-n", str(script)])
    assert checked.returncode == 0, checked.stderr


def test_scontrol_lines_give_each_array_task_its_state():
    states = parse_jobs(SCONTROL)
    assert sorted(states) == ["40_0", "40_1", "40_2", "40_3"]
    assert states["40_0"] == TaskState("RUNNING", "0:0", 1, "/r/slurm/logs/40_0.out")
    assert states["40_3"].state == "PENDING"


def test_a_tasks_state_is_what_the_study_shows(tmp_path):
    folder = StudyFolder(tmp_path)
    run = ("simclr", 0)

    def shown(info: TaskState | None) -> tuple[str, str] | None:
        record = task_record(folder, run, "40_0", info)
        return None if record is None else (record.state, record.detail)

    assert shown(TaskState("PENDING")) == ("queued", "slurm job 40_0 PENDING")
    assert shown(TaskState("RUNNING", restarts=2)) == (
        "running", "slurm job 40_0 RUNNING, restarted 2x")  # fmt: skip
    assert shown(TaskState("CANCELLED", "0:15")) == (
        "failed", "slurm job 40_0 CANCELLED (exit 0:15)")  # fmt: skip
    assert shown(TaskState("TIMEOUT", "0:1"))[0] == "failed"
    assert shown(None) == ("failed", "slurm job 40_0 gone from SLURM, no result")
    assert shown(TaskState("FAILED", "75:0")) is None  # busy: another process has the run
    assert task_record(folder, run, "40_0", TaskState("FAILED", "1:0")).log == folder.log_path(*run)
    folder.result_path(*run).write_text("{}")
    assert shown(TaskState("FAILED", "1:0")) is None  # finished meanwhile: done


def test_without_sbatch_or_with_a_bad_option_the_study_stops_in_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = study(tmp_path, "r", "--executor", "slurm", path=str(empty))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        "hexssl: error: --executor slurm needs `sbatch` on PATH (run it on a SLURM login node, "
        "or use --executor local)"
    ]
    assert not (tmp_path / "r").exists()
    res = study(tmp_path, "r", "--executor", "slurm", "--slurm", "memory=4G", path=str(empty))
    assert res.returncode == 2
    assert res.stderr.startswith("hexssl: error: unknown slurm option 'memory'")
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slurm
def test_an_option_the_cluster_refuses_submits_nothing_and_shows_sbatchs_message(tmp_path):
    res = study(tmp_path, "r", "--executor", "slurm", "--slurm", "partition=nope")
    assert res.returncode == 2, res.stdout + res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("hexssl: error: sbatch refused the job: invalid partition specified")
    assert "--partition=nope" in line
    assert read_submissions(StudyFolder(tmp_path / "r")) == []
