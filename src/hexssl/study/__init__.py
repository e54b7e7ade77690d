"""Paired multi-seed comparisons of your own arms: protocol, runner, evaluation, report.

A study fixes in a protocol file the arms (configs), the seeds and how runs are
evaluated, before any result exists; :func:`run_study` trains and evaluates each run
without a result (resuming from its checkpoint), and :func:`study_report` (``hexssl
report RESULTS --study``) turns the per-run JSON files into paired tables and plots.
Within a seed, every arm starts from the same initialisation, data order and views.

Example:
    >>> from pathlib import Path
    >>> from hexssl.study import Study, load_protocol, run_study
    >>> p = load_protocol("benchmarks/hex_study_protocol.yaml", epochs=2)
    >>> study = Study(p, Path("runs/s"), Path("results/s"), ["simclr"], [0], [])
    >>> # run_study(study); print(study_report("results/s", "results/s/report"))
"""

from hexssl.study.evaluation import (
    CURVE_COLUMNS,
    evaluate_run,
    export_weights,
    purity_summary,
    read_curves,
    transfer,
    write_curves,
)
from hexssl.study.protocol import Protocol, arm_config, load_protocol, run_name, schedule
from hexssl.study.report import study_report
from hexssl.study.runner import (
    TRAIN_DONE,
    Study,
    WallClock,
    run_one,
    run_study,
    start,
    train_run,
)

__all__ = [
    "CURVE_COLUMNS",
    "TRAIN_DONE",
    "Protocol",
    "Study",
    "WallClock",
    "arm_config",
    "evaluate_run",
    "export_weights",
    "load_protocol",
    "purity_summary",
    "read_curves",
    "run_name",
    "run_one",
    "run_study",
    "schedule",
    "start",
    "study_report",
    "train_run",
    "transfer",
    "write_curves",
]
