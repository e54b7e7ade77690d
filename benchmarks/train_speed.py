"""Images/s of the full hexssl training step against the raw backbone's limit (issue 8).

For each size and speed setting this measures

- ``raw``: the backbone alone, forward of two views of B images + backward + SGD step,
  in the same precision and memory format. Nothing the training step does can be
  faster, so this is the limit;
- ``simclr``, ``simclr-hex``, ``simclr-hex-fused`` (``hex.fused=true``), ``simclr-compiled``
  and ``simclr-hex-compiled`` (``trainer.compile_loss=true``), ``barlow-hex``: the whole
  step as ``hexssl pretrain`` runs
  it, through the real Trainer, loggers and callbacks: data loading, on-device
  augmentation, forward, loss, backward, LARS, the online probe, logging. HEX runs
  from the first step (no warm-up).

A step's time is the interval between consecutive ``on_train_batch_start`` calls, so it
includes data loading and every hook: host (wall) ms per step always, and on CUDA the
GPU's ms per step from events beside it. No step in the timed window logs (logging and
its read-backs come after it; the run fails if one did). The runs compared are
alternated: ``--rounds`` rounds, each running every run once (in reversed order every
other round, so a drifting machine favours none); reported per run: the median of the
rounds' medians and their spread ((max - min) / median). The warm-up steps of every
run absorb torch.compile's compilation. A compiled run that fell back to eager (a
compiler failure, the recompile limit hit, or on CUDA any graph break) stops the
script: its number would be an eager one under a compiled name. The data is the
tiny-imagenet-hier50 CPU preset's (32 px); the machine must be otherwise idle.

    python benchmarks/train_speed.py                                   # everything, CPU
    python benchmarks/train_speed.py --sizes 16:256 --settings bf16-cl --runs raw simclr
    python benchmarks/train_speed.py --device cuda --sizes 64:512 --settings bf16-cl fp16-cl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, TypedDict

import lightning as L
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from hexssl.backbones import build_backbone
from hexssl.config import load_config
from hexssl.run.machine import machine_summary
from hexssl.run.speed import channels_last_is_safe, compile_forward, to_channels_last
from hexssl.run.train import pretrain

RESULTS = Path(__file__).parent / "results"
PRESET = ["configs/simclr.yaml", "configs/data/tiny-imagenet-hier50-cpu.yaml"]
# The study's copy of the preset's data, beside the repository (benchmarks only; the
# preset itself reads `hexssl data get tiny-imagenet-hier50`'s build in the cache).
SHARED_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-hier50.tar.gz"
)
SETTINGS: dict[str, dict[str, Any]] = {
    "fp32-nchw": {"precision": "32", "channels_last": False, "compile": False},
    "fp32-cl": {"precision": "32", "channels_last": True, "compile": False},
    "fp32-nchw-compile": {"precision": "32", "channels_last": False, "compile": True},
    "bf16-cl": {"precision": "bf16-mixed", "channels_last": True, "compile": False},
    "bf16-cl-compile": {"precision": "bf16-mixed", "channels_last": True, "compile": True},
    "fp16-cl": {"precision": "16-mixed", "channels_last": True, "compile": False},
    "fp16-cl-compile": {"precision": "16-mixed", "channels_last": True, "compile": True},
}
RUNS: dict[str, list[str]] = {
    "simclr": ["method.name=simclr", "hex.enabled=false"],
    "simclr-hex": ["method.name=simclr", "hex.enabled=true"],
    # issue 22: HEX's maths as one torch.compile graph (compiled in the warm-up steps)
    "simclr-hex-fused": ["method.name=simclr", "hex.enabled=true", "hex.fused=true"],
    # the whole loss compiled (trainer.compile_loss), with HEX and without it
    "simclr-compiled": ["method.name=simclr", "hex.enabled=false", "trainer.compile_loss=true"],
    "simclr-hex-compiled": ["method.name=simclr", "hex.enabled=true", "trainer.compile_loss=true"],
    "barlow-hex": ["method.name=barlow", "hex.enabled=true"],
}
FULL_TRAIN = 25_000  # tiny-imagenet-hier50's training images, without max_train_samples
AMP_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class StepTimer(L.Callback):
    """Time between consecutive training-batch starts (everything a step costs).

    Host wall time always; on CUDA also an event recorded on the stream at each batch
    start (no synchronisation, which would stall the queue the step relies on), read
    after the run: in steady state the event interval is the step's cost on the GPU and
    the host interval what the host spent issuing it (equal when the host waits for the
    GPU). Also notes the steps that logged (``SSLMethod.logged_this_step``).
    """

    def __init__(self, device: torch.device) -> None:
        self.starts: list[float] = []
        self.events: list[Any] = []
        self.logged: list[int] = []
        self.device = device

    def on_train_batch_start(self, *args: Any) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        if getattr(pl_module, "logged_this_step", False):
            self.logged.append(len(self.starts) - 1)

    @property
    def host_times(self) -> list[float]:
        """Seconds between consecutive batch starts, on the host."""
        return [b - a for a, b in zip(self.starts, self.starts[1:])]

    @property
    def gpu_times(self) -> list[float] | None:
        """Seconds between consecutive batch starts on the GPU stream (None off CUDA)."""
        if not self.events:
            return None
        torch.cuda.synchronize(self.device)
        return [a.elapsed_time(b) / 1e3 for a, b in zip(self.events, self.events[1:])]


class Times(TypedDict):
    """One run's timed steps: ``host`` seconds, ``gpu`` seconds (None off CUDA)."""

    host: list[float]
    gpu: list[float] | None


def step_times(host: list[float], gpu: list[float] | None = None) -> Times:
    """The timed steps of one run (host and, on CUDA, GPU seconds per step)."""
    return {"host": host, "gpu": gpu}


class CompileFallbackError(SystemExit):
    """A compiled run ran (partly) eagerly: its timing must not be reported as compiled."""


def compiled_run(run: str, setting: dict[str, Any]) -> bool:
    """Whether ``run`` in ``setting`` compiles anything (model, whole loss or HEX)."""
    return bool(setting["compile"]) or run.endswith("-compiled") or run.endswith("-fused")


def is_compile_fallback(w: warnings.WarningMessage) -> bool:
    """hexssl's one warning when a compiled part gives up and runs eagerly
    (``hexssl.run.speed.compile_forward``, ``hex.fused``): "torch.compile ... failed"."""
    text = str(w.message)
    return issubclass(w.category, RuntimeWarning) and "torch.compile" in text and "failed" in text


def check_compiled(
    run: str, caught: list[warnings.WarningMessage], graph_breaks: int, strict: bool
) -> None:
    """Fail loudly if a compiled run fell back to eager.

    hexssl's compile wrappers warn once and run eagerly when compilation fails, and
    dynamo raises on its recompile limit here (``fail_on_recompile_limit_hit``), which
    those wrappers turn into the same warning. ``strict``: graph breaks count too (on
    CUDA the GPU path compiles as whole graphs; the CPU's sparse HEX path breaks).
    """
    fell_back = [str(w.message) for w in caught if is_compile_fallback(w)]
    if fell_back:
        raise CompileFallbackError(f"{run}: a compiled run fell back to eager: {fell_back[0]}")
    if strict and graph_breaks:
        reasons = sorted(counters["graph_break"])[:3]
        raise CompileFallbackError(f"{run}: {graph_breaks} graph breaks ({reasons})")


def raw_step_times(width: int, batch: int, setting: dict[str, Any], args: Any) -> Times:
    """Seconds per raw backbone step: 2 views x forward, backward, SGD (momentum 0.9).

    Synchronised per step on CUDA, so host and GPU time are the same wall time here."""
    device = torch.device(args.device)
    net = build_backbone("resnet18", stem="cifar", width=width).to(device)
    # the same guard as training: NHWC hangs or crashes CPU backward of narrow ResNets
    channels_last = setting["channels_last"] and channels_last_is_safe(net)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if setting["compile"]:
        compile_forward(net, "backbone")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    views = [torch.randn(batch, 3, 32, 32, device=device) for _ in range(2)]
    if channels_last:
        views = [to_channels_last(v) for v in views]
    dtype = AMP_DTYPES.get(setting["precision"])
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = sum(net(v).float().square().mean() for v in views)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    timed = times[args.warmup :]
    return step_times(timed, timed if device.type == "cuda" else None)


def batch_fraction(preset: list[str], batch: int, n: int, overrides: list[str]) -> float:
    """The ``limit_train_batches`` fraction of an epoch that gives ``n`` steps."""
    options = load_config(preset, overrides).data.options
    per_epoch = int(options.get("max_train_samples", FULL_TRAIN)) // batch
    if per_epoch < n:
        raise SystemExit(f"the preset has {per_epoch} steps of batch {batch}; need {n}")
    return (n + 0.5) / per_epoch


def full_step_times(run: str, width: int, batch: int, setting: dict[str, Any], args: Any) -> Times:
    """Seconds per training step of ``hexssl pretrain`` on the preset's data."""
    device = torch.device(args.device)
    timer = StepTimer(device)
    n = args.warmup + args.steps + 1
    fraction = batch_fraction(args.preset, batch, n, args.data_overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            args.preset,
            [
                *RUNS[run],
                f"name={run}",
                f"output_dir={tmp}",
                f"backbone.kwargs.width={width}",
                f"data.batch_size={batch}",
                f"trainer.precision={setting['precision']}",
                f"trainer.channels_last={str(setting['channels_last']).lower()}",
                f"trainer.compile={str(setting['compile']).lower()}",
                f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
                "trainer.max_epochs=1",
                f"trainer.limit_train_batches={fraction}",
                "trainer.limit_val_batches=0",
                "trainer.progress_bar=false",
                "trainer.checkpoint_every_n_steps=0",
                f"trainer.log_every_n_steps={n + 10}",  # only the run's last step logs
                "hex.warmup_epochs=0",
                "eval.knn_at_end=false",
                "eval.purity_every_n_steps=0",
                *args.data_overrides,
            ],
        )
        compiled = compiled_run(run, setting)
        if compiled:  # count this run's graph breaks; no silent eager after the limit
            torch._dynamo.reset()
            counters.clear()
        with (
            warnings.catch_warnings(record=True) as caught,
            torch._dynamo.config.patch(fail_on_recompile_limit_hit=True),
        ):
            warnings.simplefilter("always")
            pretrain(cfg, extra_callbacks=[timer])
        if compiled:
            breaks = sum(counters["graph_break"].values())
            check_compiled(run, caught, breaks, strict=device.type == "cuda")
    timed = range(args.warmup, args.warmup + args.steps)
    if any(step in timed for step in timer.logged):
        raise SystemExit(f"{run}: steps {timer.logged} logged inside the timed window")
    gpu = timer.gpu_times
    return step_times(timer.host_times[args.warmup :], gpu[args.warmup :] if gpu else None)


def round_order(runs: list[str], rounds: int) -> list[str]:
    """The runs alternated over ``rounds``: every run once a round, reversed every other
    round (A B C, C B A, A B C, ...), so that a drifting machine favours no run."""
    return [run for r in range(rounds) for run in (runs if r % 2 == 0 else runs[::-1])]


def summarise(rounds: list[Times]) -> dict[str, Any]:
    """Median of the rounds' medians (GPU time on CUDA, else host) and their spread."""
    host = [statistics.median(t["host"]) for t in rounds]
    gpu = [statistics.median(t["gpu"]) for t in rounds] if rounds[0]["gpu"] else None
    main = gpu or host
    med = statistics.median(main)
    return dict(
        seconds=med,
        spread=(max(main) - min(main)) / med,
        round_seconds=main,
        host_ms=1e3 * statistics.median(host),
        gpu_ms=1e3 * statistics.median(gpu) if gpu else None,
        n=sum(len(t["host"]) for t in rounds),
    )


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (size, setting, run): median seconds per step over alternated rounds."""
    rows = []
    for size in args.sizes:
        width, batch = (int(v) for v in size.split(":"))
        for name in args.settings:
            setting = SETTINGS[name]
            done: dict[str, list[Times]] = {run: [] for run in args.runs}
            for run in round_order(args.runs, args.rounds):
                if run == "raw":
                    done[run].append(raw_step_times(width, batch, setting, args))
                else:
                    done[run].append(full_step_times(run, width, batch, setting, args))
            for run in args.runs:
                row = dict(width=width, batch=batch, setting=name, run=run)
                row.update(summarise(done[run]))
                med = row["seconds"]
                row.update(img_per_s=batch / med, views_per_s=2 * batch / med)
                rows.append(row)
                gpu = "" if row["gpu_ms"] is None else f", GPU {row['gpu_ms']:.1f} ms"
                print(
                    f"w{width} b{batch} {name:16s} {run:11s} {batch / med:8.1f} img/s "
                    f"(+-{row['spread']:.1%} over {args.rounds} rounds; host "
                    f"{row['host_ms']:.1f} ms{gpu} per step)",
                    flush=True,
                )
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Full step / raw limit, HEX on / off, and the speed-up over fp32 NCHW eager."""
    by = {(r["width"], r["batch"], r["setting"], r["run"]): r for r in rows}
    out = []
    for (w, b, s, run), r in by.items():
        raw = by.get((w, b, s, "raw"))
        # HEX on / off compares like with like: a compiled loss against a compiled one
        off = by.get((w, b, s, "simclr-compiled" if run.endswith("-compiled") else "simclr"))
        base = by.get((w, b, "fp32-nchw", run))
        out.append(
            dict(
                width=w,
                batch=b,
                setting=s,
                run=run,
                of_raw=r["img_per_s"] / raw["img_per_s"] if raw and run != "raw" else None,
                hex_on_over_off=(
                    off["img_per_s"] / r["img_per_s"]
                    if off and run.startswith("simclr-hex")
                    else None
                ),
                speedup_vs_fp32=r["img_per_s"] / base["img_per_s"] if base else None,
            )
        )
    return out


def fmt(x: float | None, pattern: str) -> str:
    return "–" if x is None else pattern.format(x)


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Training-step throughput, {res['device']} ({res['machine']}; {res['threads']} "
        f"threads, torch {res['torch']}), ResNet-18 CIFAR stem, 32 px, median over "
        f"{res.get('rounds', 1)} alternated rounds of each round's median of "
        f"{res['steps']} steps after {res['warmup']} warm-up steps (GPU time on CUDA). "
        "img/s = images (2 views each) per second; spread = (max - min) / median of the "
        "rounds; host ms = host wall time per step.",
        "`of raw` = full step / raw backbone (fwd+bwd+SGD, same precision and layout); "
        "`step time HEX/off` = SimCLR+HEX step time / SimCLR step time; "
        "`vs fp32` = speed-up over fp32 NCHW eager (the old default).",
        "",
        "| width | batch | setting | run | img/s | spread | host ms | GPU ms | of raw "
        "| step time HEX/off | vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    extra = {(q["width"], q["batch"], q["setting"], q["run"]): q for q in res["ratios"]}
    for r in res["rows"]:
        q = extra[(r["width"], r["batch"], r["setting"], r["run"])]
        lines.append(
            f"| {r['width']} | {r['batch']} | {r['setting']} | {r['run']} | "
            f"{r['img_per_s']:.1f} | {fmt(r.get('spread'), '{:.1%}')} | "
            f"{fmt(r.get('host_ms'), '{:.1f}')} | {fmt(r.get('gpu_ms'), '{:.1f}')} | "
            f"{fmt(q['of_raw'], '{:.0%}')} | "
            f"{fmt(q['hex_on_over_off'], '{:.3f}')} | {fmt(q['speedup_vs_fp32'], '{:.2f}x')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["16:256", "64:128"], help="width:batch")
    ap.add_argument(
        "--settings", nargs="+", default=["fp32-nchw", "bf16-cl", "bf16-cl-compile"],
        choices=sorted(SETTINGS),
    )  # fmt: skip
    ap.add_argument(
        "--runs", nargs="+", default=["raw", *RUNS], choices=["raw", *RUNS], help="what to time"
    )
    ap.add_argument("--steps", type=int, default=8, help="timed steps per point")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternated rounds of every run (>= 3 to compare)"
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--preset", nargs="+", default=PRESET, help="the config files whose data and heads are used"
    )
    ap.add_argument(
        "--data-overrides", nargs="*", default=[f"data.root={SHARED_DATA}"],
        help="extra config overrides (default: data.root=<the study's archive in ../shared>)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _cuda)")
    args = ap.parse_args()
    rows = measure(args)
    res = dict(
        device=args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=machine_summary(),
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        rows=rows,
        ratios=ratios(rows),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_speed{args.tag}.json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    (args.out / f"train_speed{args.tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
