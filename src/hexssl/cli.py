"""The ``hexssl`` command line: one entry point, one sub-command per job.

hexssl pretrain PRESET|CONFIG ... [key=value ...] [--print-config]
hexssl presets
hexssl resume RUN_DIR [key=value ...] [--allow-changes] [--checkpoint last|previous|FILE]
hexssl export RUN_DIR|WEIGHTS [--format safetensors|hf|torchvision|timm|state_dict] [--out PATH]
hexssl knn|linear TARGET... [--data data.KEY=VALUE ...] [--out FILE]  (runs, weights, folders)
hexssl umap TARGET | report RUN_DIR...
hexssl study PROTOCOL [DATASET ...] [--arms A ..] [--seeds S ..] [--workers N]
             [--executor local|slurm] [--set KEY=VALUE ..] [--status | --dry-run]
hexssl study report RESULTS_DIR | hexssl study --list
hexssl convert-config THEIR.yaml [--out OURS.yaml] [--as-run]
hexssl demo
hexssl env [--json]
hexssl data get NAME [--from FILE] [--out DIR] | data list [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hexssl import __version__
from hexssl.errors import ConfigError, NonFiniteLossError, PreemptedError
from hexssl.run.console import show_warning


def cmd_pretrain(args: argparse.Namespace) -> int:
    from hexssl.config import dump_config, load_config
    from hexssl.run.build import check_names

    files = [a for a in args.items if "=" not in a]
    overrides = [a for a in args.items if "=" in a]
    if not files:
        raise ConfigError(
            "pretrain needs a method and a dataset, presets or YAML files, e.g. "
            "simclr cifar10-cpu (`hexssl presets` lists the presets)"
        )
    cfg = load_config(files, overrides)
    check_names(cfg)  # registry names and HEX values, also for --print-config
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    from hexssl.run.train import pretrain

    pretrain(cfg)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from hexssl.config import PRESET_DIR, preset_names

    names = preset_names()
    print(f"methods:  {' '.join(names['method'])}")
    print(f"datasets: {' '.join(names['dataset'])}")
    print("          (<dataset>: full size, GPU; <dataset>-cpu: a few minutes on a CPU)")
    print(f"overlays: {' '.join(names['overlay'])}")
    print("usage:    hexssl pretrain METHOD DATASET [OVERLAY] [key=value ...]")
    print("          e.g. hexssl pretrain simclr cifar100-cpu hex.enabled=true")
    print(f"files:    {PRESET_DIR} (copy one to start your own; guide: README.md there)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from hexssl.run.train import resume

    resume(args.run_dir, args.overrides, args.allow_changes, args.checkpoint)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hexssl.export import export_run, release_meta_path

    path = export_run(args.run_dir, args.format, args.out, args.checkpoint)
    if args.format == "safetensors":
        print(f"wrote {path} and its architecture {release_meta_path(path)}")
        if Path(args.run_dir).suffix == ".pt":
            print(f"({path.name} replaces it: {args.run_dir} can be deleted)")
    elif args.format == "hf":
        print(f"wrote {path}/ (config.json, model.safetensors, README.md)")
    else:
        print(f"wrote {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hexssl.run import eval_jobs

    job: Callable[..., Any] = getattr(eval_jobs, f"run_{args.command}")
    job(args)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.study:
        from hexssl.study.report import study_report

        if len(args.run_dirs) != 1:
            raise ConfigError("--study takes one results folder, e.g. benchmarks/results/hex_study")
        print(study_report(args.run_dirs[0], out))
        print(f"(study report and plots in {out})")
        return 0
    from hexssl.eval.report import compare_runs

    check_run_dirs(args.run_dirs)
    print(compare_runs([Path(r) for r in args.run_dirs], out))
    print(f"(report and plots in {out})")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    if args.list:
        return _list_protocols()
    if args.items[:1] == ["report"]:
        return _study_report(args)
    if not args.items:
        raise ConfigError(
            "study needs a protocol: a YAML file or a shipped name, then dataset presets, "
            "e.g. hexssl study hex-vs-simclr cifar100 (`hexssl study --list`)"
        )
    from hexssl.study.command import (
        dry_run_text,
        parse_options,
        plan_study,
        run_planned,
        status_text,
    )

    plan = plan_study(
        args.items[0], args.items[1:], arms=args.arms, seeds=args.seeds, overrides=args.set,
        results=args.results, runs_dir=args.runs_dir, executor=args.executor,
        executor_options=parse_options(args.slurm, "--slurm"), workers=args.workers,
    )  # fmt: skip
    if args.dry_run:
        print(dry_run_text(plan), end="")
        return 0
    if args.status:
        print(status_text(plan), end="")
        return 0
    code = run_planned(plan)
    print(status_text(plan), end="")
    if code == 0 and all(plan.folder.result_path(a, s).is_file() for a, s in plan.runs):
        print(f"[study] all done; the verdict: hexssl study report {plan.folder.path}")
    return code


def _list_protocols() -> int:
    from hexssl.config import PROTOCOL_DIR, shipped_protocols  # no torch: a quick listing

    for name, about in shipped_protocols().items():
        print(f"{name:<16} {about}")
    print(f"files: {PROTOCOL_DIR} (copy one to start your own)")
    print("usage: hexssl study PROTOCOL DATASET_PRESET [--seeds 0 1 2] (`hexssl presets`)")
    return 0


def _study_report(args: argparse.Namespace) -> int:
    from hexssl.study.report import study_report

    if len(args.items) != 2:
        raise ConfigError("study report takes one results folder: hexssl study report DIR")
    out = Path(args.out) if args.out else Path(args.items[1]) / "report"
    print(study_report(args.items[1], out, args.delta))
    print(f"(study report and plots in {out})")
    return 0


def check_run_dirs(run_dirs: list[str]) -> None:
    """Refuse report inputs that are not run directories, naming what was expected."""
    for d in map(Path, run_dirs):
        if not (d / "summary.json").is_file() and not (d / "metrics.csv").is_file():
            inside = sorted(p.parent.name for p in d.glob("*/summary.json"))[:5]
            hint = f"; it holds runs, pass them: {' '.join(str(d / n) for n in inside)}"
            raise ConfigError(
                f"report: {d} is not a run directory (expected summary.json or metrics.csv "
                f"written by `hexssl pretrain`){hint if inside else ''}"
            )


def cmd_convert(args: argparse.Namespace) -> int:
    from hexssl.compat import convert_file

    text, notes = convert_file(args.config, as_run=args.as_run)
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    if args.out:
        from hexssl.run.atomic import atomic_write_text

        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hexssl.demo import run_demo

    run_demo(args.output_dir, args.epochs)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from hexssl.run.machine import env_report

    print(env_report(args.json), end="")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from hexssl.data.get import dataset_status, get_dataset

    if args.data_command == "list":
        for name, path, present, url in dataset_status(args.out):
            print(f"{name:22s} {'present' if present else 'missing':8s} {path}  (from {url})")
        return 0
    got = get_dataset(args.name, args.source, args.out)
    print(got.message)
    if got.warning:
        print(f"[hexssl] warning: {got.warning}", file=sys.stderr)
    if args.out is not None:
        print(f"use it with data.root={args.out}")
    return 0


DATA_NAMES = "cifar10, cifar100, stl10 or tiny-imagenet-hier50"
DATA_OUT_HELP = (
    "the folder to put it in, then pass data.root=DIR (default: the dataset cache, "
    "$HEXSSL_CACHE/datasets or ~/.cache/hexssl/datasets, where the presets look)"
)


def _data_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="get the presets' datasets (download, checksum, build)")
    dsub = p.add_subparsers(dest="data_command", required=True)
    g = dsub.add_parser(
        "get",
        help=f"download {DATA_NAMES}; tiny-imagenet-hier50 is built from the official "
        "Tiny-ImageNet-200 zip (the study's 50 classes in 10 superclasses)",
    )
    g.add_argument("name", metavar="NAME", help=DATA_NAMES)
    g.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="a local copy of the official archive instead of downloading it (e.g. "
        "cifar-10-python.tar.gz, or tiny-imagenet-200.zip for tiny-imagenet-hier50)",
    )
    g.add_argument("--out", metavar="DIR", default=None, help=DATA_OUT_HELP)
    ls = dsub.add_parser("list", help="where each dataset is, whether it is there, its source")
    ls.add_argument("--out", metavar="DIR", default=None, help="look in DIR, not the cache")
    p.set_defaults(func=cmd_data)


EXPORT_CHOICES = ("safetensors", "hf", "torchvision", "timm", "state_dict")
FORMAT_HELP = (
    "safetensors (the default): NAME.safetensors + NAME.json (what hexssl knn/linear and "
    "load_backbone read); hf: a folder with config.json, model.safetensors and a README.md "
    "model card; torchvision / timm / state_dict: a {name: tensor} .pt for those libraries"
)
CHECKPOINT_HELP = (
    "last (default) | previous (the one before last) | a .ckpt file; there is no 'best': "
    "the validation split is the test set for CIFAR/STL-10"
)


TARGETS_HELP = (
    "what to evaluate, one or more: a run directory written by `hexssl pretrain`, released "
    "weights (WEIGHTS.safetensors with WEIGHTS.json beside it, e.g. "
    "benchmarks/results/hex_study/weights/simclr-s0.safetensors; a folder written by "
    "`hexssl export --format hf`; an old WEIGHTS.pt), or a folder of these (e.g. "
    "benchmarks/results/hex_study/weights): the data is read once and one table printed"
)


def _eval_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("targets", nargs="*", metavar="RUN_DIR | WEIGHTS | FOLDER", help=TARGETS_HELP)
    p.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="data.KEY=VALUE",
        help="evaluate on other images: settings of the data section, e.g. "
        "--data data.root=cifar10-jpeg.tar.gz (default: the data each backbone was "
        "trained on)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help=f"run directories only: {CHECKPOINT_HELP}",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="also write the results of every target into this file (JSON; umap: PNG). "
        "Run directories always get <run>/<command>[-<data>].json",
    )
    p.set_defaults(func=cmd_eval)
    return p


STUDY_HELP = """\
Does HEX help on your data? A paired multi-seed study: every (arm, seed) of a
protocol trained, evaluated and compared by seed. Runs every run without a result
(resuming from its checkpoint), each in its own process; rerun it to continue.

  hexssl study hex-vs-simclr cifar100 --seeds 0 1 2            # on this machine
  hexssl study hex-vs-simclr synthetic-cpu --workers 2 --status
  hexssl study relatives cifar100 --executor slurm --slurm partition=gpu time=8:00:00
  hexssl study report studies/hex-vs-simclr-cifar100          # the verdict
"""


def _study_parser(sub: Any) -> None:
    p = sub.add_parser("study", help="does HEX help on your data? paired multi-seed study",
                       description=STUDY_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("items", nargs="*", metavar="PROTOCOL [DATASET ...] | report DIR",
                   help="a protocol (YAML file or shipped name: `hexssl study --list`) and "
                   "dataset presets or config files composed into every arm; or `report "
                   "DIR` for a results folder's tables and verdict")  # fmt: skip
    p.add_argument("--arms", nargs="+", default=None, help="only these arms (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="these seeds (default: the protocol's); more grow the study")  # fmt: skip
    p.add_argument("--workers", type=int, default=None,
                   help="runs at once: local processes sharing the CPU threads, one GPU each "
                   "when there are several (default 1); SLURM: jobs at once (default: "
                   "all); a results folder keeps its last launch's value")  # fmt: skip
    p.add_argument("--executor", default=None,
                   help="where runs execute: local | slurm (default: the one the results "
                   "folder was started with, else local)")  # fmt: skip
    p.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE",
                   help="SLURM resources, e.g. partition=gpu time=8:00:00 gpus=1 cpus=8 "
                   "mem=32G account=X (see docs/slurm.md)")  # fmt: skip
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for every arm (data.root=/data/x "
                   "trainer.max_epochs=50), or protocol keys as study.KEY (study.epochs=50, "
                   "study.eval.linear_epochs=20); part of the fixed protocol")  # fmt: skip
    p.add_argument("--results", default=None, metavar="DIR",
                   help="results folder (default studies/<protocol>-<datasets>)")  # fmt: skip
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where runs train (checkpoints; default <results>/runs)")  # fmt: skip
    p.add_argument("--status", action="store_true",
                   help="one table of done / running / queued / failed runs and the time "
                   "left; runs nothing")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (runs, resolved configs, where results go); "
                   "writes nothing")  # fmt: skip
    p.add_argument("--list", action="store_true", help="list the shipped protocols")
    p.add_argument("--out", default=None, help="report: output folder (default DIR/report)")
    p.add_argument("--delta", type=float, default=1.0,
                   help="report: the difference (points) the verdict sizes seeds for")  # fmt: skip
    p.set_defaults(func=cmd_study)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hexssl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--version", action="version", version=f"hexssl {__version__}",
        help="print the version and exit (`hexssl env` for torch, CUDA and the CPU)",
    )  # fmt: skip
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train a method on a dataset (config + overrides)")
    p.add_argument(
        "items",
        nargs="+",
        metavar="CONFIG | KEY=VALUE",
        help="presets (`hexssl presets`) or YAML files, composed left to right (later ones "
        "win), e.g. simclr cifar10-cpu or my.yaml, then dotted overrides, e.g. optim.lr=0.3 "
        "hex.enabled=true (see configs/README.md)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser("presets", help="list the shipped presets (methods, datasets, overlays)")
    p.set_defaults(func=cmd_presets)
    p = sub.add_parser("resume", help="continue a run exactly from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="e.g. trainer.max_epochs=200 to extend a finished run",
    )
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="allow overrides that change what is trained (e.g. data.batch_size); "
        "they are recorded in <run>/resumes.log",
    )
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser(
        "export", help="write a backbone as safetensors, an hf folder, or for torchvision/timm"
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR | WEIGHTS",
        help="a run directory, or released weights to convert (e.g. an old WEIGHTS.pt)",
    )
    p.add_argument(
        "--format", default="safetensors", choices=list(EXPORT_CHOICES), help=FORMAT_HELP
    )
    p.add_argument(
        "--out",
        default=None,
        help="output file (a folder for hf); default beside the source: "
        "<run>/backbone.safetensors, <run>/backbone-hf, <run>/backbone-<fmt>.pt, or "
        "WEIGHTS.safetensors, WEIGHTS-hf, WEIGHTS-<fmt>.pt",
    )
    p.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    p.set_defaults(func=cmd_export)
    k = _eval_parser(sub, "knn", "weighted kNN accuracy on frozen features (class, superclass)")
    k.add_argument("--k", type=int, nargs="+", default=[20], help="neighbours (sweepable)")
    k.add_argument("--t", type=float, nargs="+", default=[0.07], help="temperatures")
    lin = _eval_parser(sub, "linear", "offline linear probe on cached frozen features")
    lin.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[1.0, 0.1, 0.01],
        help="fractions of the train labels the probe sees (class-balanced subsets), "
        "default 1.0 0.1 0.01",
    )
    lin.add_argument(
        "--epochs", type=int, default=100, help="training epochs of each probe (default 100)"
    )
    um = _eval_parser(sub, "umap", "2-D embedding plot coloured by superclass")
    um.add_argument("--method", default="umap", choices=["umap", "pca"])
    p = sub.add_parser("report", help="compare runs: markdown table and plots")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="runs/report", help="output folder")
    p.add_argument(
        "--study",
        action="store_true",
        help="RUN_DIRS is one study results folder (<arm>-s<seed>.json): paired tables",
    )
    p.set_defaults(func=cmd_report)
    _study_parser(sub)
    p = sub.add_parser("convert-config", help="translate an authors' HEX/solo-learn YAML")
    p.add_argument("config")
    p.add_argument("--out", default=None)
    p.add_argument(
        "--as-run",
        action="store_true",
        help="reproduce what their released code executed for this file (the branch its "
        "`type` fell into, their objective and hard-coded values) instead of what the file "
        "intends; fails where their code crashed",
    )
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("demo", help="SimCLR with and without HEX on built-in synthetic data")
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("env", help="versions, CPU/GPU capabilities, the fastest precision here")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    p.set_defaults(func=cmd_env)
    _data_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hexssl`` console script."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = show_warning
    try:
        code: int = args.func(args)
        return code
    except PreemptedError as err:  # a scheduler's signal: saved, unfinished, not an error
        if not err.quiet:  # under DDP the first process speaks for all
            print(f"[hexssl] {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except (ConfigError, FileNotFoundError) as err:
        print(f"hexssl: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hexssl study --list | head -1`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except OSError as err:  # a file or folder the run needs cannot be read or written
        print(f"hexssl: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"hexssl: error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
