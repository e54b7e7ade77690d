"""The ``hexssl`` command line: one entry point, one sub-command per job.

hexssl pretrain PRESET|CONFIG ... [key=value ...] [--print-config]
hexssl presets
hexssl resume RUN_DIR [key=value ...] [--allow-changes] [--checkpoint last|previous|FILE]
hexssl export RUN_DIR|WEIGHTS --format safetensors|hf|torchvision|timm|state_dict [--out PATH]
hexssl knn|linear TARGET... [--data data.KEY=VALUE ...] [--out FILE]  (runs, weights, folders)
hexssl umap TARGET | report RUN_DIR...
hexssl convert-config THEIR.yaml [--out OURS.yaml] [--as-run]
hexssl demo
hexssl env [--json]
"""

from __future__ import annotations

import argparse
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
    from hexssl.export import export_run

    path = export_run(args.run_dir, args.format, args.out, args.checkpoint)
    if args.format == "safetensors":
        print(f"wrote {path} and its architecture {path.with_suffix('.json')}")
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


EXPORT_CHOICES = ("safetensors", "hf", "torchvision", "timm", "state_dict")
FORMAT_HELP = (
    "safetensors: NAME.safetensors + NAME.json (what hexssl knn/linear and load_backbone "
    "read); hf: a folder with config.json, model.safetensors and a README.md model card; "
    "torchvision / timm / state_dict (the default): a {name: tensor} .pt for those libraries"
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
        "--data data.root=../shared/data/cifar10-jpeg.tar.gz (default: the data each "
        "backbone was trained on)",
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
    p.add_argument("--format", default="state_dict", choices=list(EXPORT_CHOICES), help=FORMAT_HELP)
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
    except OSError as err:  # a file or folder the run needs cannot be read or written
        print(f"hexssl: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"hexssl: error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
