"""The GPU path measured in one short run: environment, the GPU test suite, host syncs
per training step, and the HEX loss against InfoNCE on CUDA (issue 22).

Every section writes its part of ``OUT/gpu_check.json`` as soon as it finishes, so a run
cut by its time limit still leaves what it measured; the markdown summary is printed
last. Dry-run on a CPU at toy sizes with ``--dry-run`` (no CUDA: the sections that need
it record why they were skipped).

    python benchmarks/gpu/device_check.py --out OUT [--sections ...] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks"), str(ROOT)]

from hexssl.config import load_config  # noqa: E402
from hexssl.run.hostsync import HostSyncCounter  # noqa: E402
from hexssl.run.train import pretrain  # noqa: E402
from loss_speed import GPU_ONLY, LOSSES, median_times  # noqa: E402

PRESET = ["configs/simclr.yaml", "configs/data/tiny-imagenet-hier50-cpu.yaml"]
SECTIONS = (
    "host_syncs", "loss_speed", "train_speed", "gpu_tests", "train_speed_fused",
    "train_speed_compiled", "step_profile",
)  # fmt: skip


class Results:
    """``gpu_check.json``, rewritten after every section."""

    def __init__(self, out: Path) -> None:
        self.path, self.data = out / "gpu_check.json", {}  # type: dict[str, Any]
        out.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def environment() -> dict[str, Any]:
    import lightning

    env = {
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    for name in ("timm", "torchvision", "kornia_rs"):
        try:
            env[name] = __import__(name).__version__
        except Exception as err:  # optional packages: record what is missing
            env[name] = f"missing ({type(err).__name__})"
    return env


def gpu_tests(out: Path, timeout: int, dry: bool) -> dict[str, Any]:
    """``pytest -m gpu`` in parallel workers; per-test outcome and the smoke losses."""
    xml = out / "pytest_gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", "junit_logging=no"]  # fmt: skip
    if not dry:
        cmd += ["-n", "8"]
    start = time.time()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail = (res.stdout + res.stderr)[-4000:]
    except subprocess.TimeoutExpired as err:
        tail = f"timed out after {timeout} s\n{(err.stdout or b'')[-3000:]!r}"
    (out / "pytest_gpu.txt").write_text(tail)
    cases: dict[str, Any] = {}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                if case.find(tag) is not None:
                    outcome = tag
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            cases[case.get("name", "?")] = {"outcome": outcome, **props}
    xml.unlink(missing_ok=True)  # parsed into gpu_check.json: one returned file fewer
    counts: dict[str, int] = {}
    for c in cases.values():
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"seconds": round(time.time() - start, 1), "counts": counts, "cases": cases}


class CountSyncs(Callback):
    """Host syncs over whole steps [first, last), each from the end of the step before
    (so the batch fetch and every hook count): torch's sync debug mode on CUDA, the op
    counter of hexssl.run.hostsync everywhere; and the wall time of those steps."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.counter = HostSyncCounter()
        self.counter.active = False
        self.cuda_warnings = 0
        self.t0 = self.t1 = 0.0

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        step = trainer.global_step  # steps done: the next step to run
        on = self.first <= step < self.last
        if step in (self.first, self.last):
            self.counter.active = False
            if torch.cuda.is_available():
                torch.cuda.set_sync_debug_mode("default")
                torch.cuda.synchronize()
            if step == self.first:
                self.t0 = time.perf_counter()
            else:
                self.t1 = time.perf_counter()
        self.counter.active = on
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn" if on else "default")


def train_speed(out: Path, data: str, timeout: int, dry: bool, variant: str = "") -> dict[str, Any]:
    """benchmarks/train_speed.py on CUDA: raw backbone, SimCLR and SimCLR + HEX (ResNet-18
    width 64, 32 px, batch 512) at bf16 and fp16 with channels_last, alternated over 3
    rounds (median of the rounds, spread, host and GPU ms per step; a compiled run that
    fell back to eager or broke its graph fails the section).

    ``variant`` "fused": SimCLR and SimCLR + fused HEX (``hex.fused=true``); "compiled":
    SimCLR and SimCLR + HEX with the whole loss compiled (``trainer.compile_loss``). Each
    runs on its own, in bf16 only, so that compiling cannot cost the plain rows; their
    files are folded into gpu_check.json (the call returns at most 8 files).
    """
    size = ["--device", "cpu", "--sizes", "4:16", "--settings", "fp32-cl", "--steps", "1",
            "--warmup", "1", "--rounds", "1"] if dry else [
            "--device", "cuda", "--sizes", "64:512", "--settings", "bf16-cl", "fp16-cl",
            "--steps", "10", "--warmup", "5", "--rounds", "3"]  # fmt: skip
    runs = {
        "": ["raw", "simclr", "simclr-hex"],
        "fused": ["simclr", "simclr-hex-fused"],
        "compiled": ["simclr-compiled", "simclr-hex-compiled"],
    }[variant]
    if variant and not dry:
        size.remove("fp16-cl")  # bf16 only: the precision of the targets and the study
    tag = f"_cuda_{variant}" if variant else "_cuda"
    small = ", max_train_samples: 64" if dry else ""  # 4 steps of 16 images
    # a run of 5 + 10 + 1 steps of 512 fits the 48 steps of the 25,000-image epoch
    cmd = [sys.executable, "benchmarks/train_speed.py", *size, "--runs", *runs,
           "--out", str(out), "--tag", tag,
           "--data-overrides", "data.dataset=imagefolder", f"data.root={data}",
           "data.on_device=true",
           f"data.options={{image_size: 32{small}}}"]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if res.returncode:
        raise RuntimeError((res.stdout + res.stderr)[-1500:])
    result: dict[str, Any] = json.loads((out / f"train_speed{tag}.json").read_text())
    if variant:
        for suffix in (".json", ".md"):
            (out / f"train_speed{tag}{suffix}").unlink()
    return result


def study_size_run(
    tmp: str, name: str, width: int, batch: int, steps: int, dry: bool, data: str, *extra: str
) -> Any:
    """SimCLR at the study's size (toy size in a dry run), ``steps`` + 4 steps, logging
    only after them, no checkpoints: the config the per-step measurements train."""
    overrides = [
        "hex.warmup_epochs=0", f"backbone.kwargs.width={width}", f"data.batch_size={batch}",
        "trainer.max_epochs=1", "trainer.progress_bar=false",
        f"trainer.log_every_n_steps={steps + 10}", "trainer.checkpoint_every_n_steps=0",
        "eval.knn_at_end=false", "eval.purity_every_n_steps=0", f"output_dir={tmp}",
        f"name={name}", f"data.options.max_train_samples={batch * (steps + 4)}",
    ]  # fmt: skip
    if dry:
        overrides += [
            "data.dataset=synthetic",
            "data.root=null",
            f"data.options={{max_train_samples: {batch * (steps + 4)}}}",
        ]
    else:
        overrides += ["trainer.accelerator=gpu", "trainer.precision=bf16-mixed",
                      "data.on_device=true", "data.dataset=imagefolder",
                      f"data.root={data}"]  # fmt: skip
    return load_config(PRESET, [*overrides, *extra])


def host_syncs(width: int, batch: int, steps: int, dry: bool, data: str) -> dict[str, Any]:
    """SimCLR + HEX at the study's size, logging every 10 steps: syncs per step outside
    logging steps (counted over steps 2 .. 2 + steps, which hold no logging step)."""
    cb = CountSyncs(2, 2 + steps)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = study_size_run(tmp, "syncs", width, batch, steps, dry, data, "hex.enabled=true")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with cb.counter:
                pretrain(cfg, [cb])
    cuda = [w for w in caught if "synchroniz" in str(w.message)]
    return {
        "steps": steps,
        "width": width,
        "batch": batch,
        "counted_ops_per_step": cb.counter.total / steps,
        "counted_ops": cb.counter.report(),
        "cuda_sync_warnings_per_step": len(cuda) / steps,
        "cuda_sync_sources": sorted({str(w.message)[:160] for w in cuda})[:10],
        "img_per_s": batch * steps / max(cb.t1 - cb.t0, 1e-9),
    }


class ProfileSteps(Callback):
    """torch.profiler over optimiser steps [first, last) (CPU and, with CUDA, kernels)."""

    def __init__(self, first: int, last: int) -> None:
        from torch.profiler import ProfilerActivity, profile

        cuda = [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
        self.first, self.last = first, last
        self.prof = profile(activities=[ProfilerActivity.CPU, *cuda])
        self.seconds = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.first:
            self._sync()
            self.prof.__enter__()
            self.seconds = -time.perf_counter()
        elif trainer.global_step == self.last:
            self._sync()
            self.seconds += time.perf_counter()
            self.prof.__exit__(None, None, None)


def step_profile(width: int, batch: int, steps: int, dry: bool, data: str) -> dict[str, Any]:
    """Where a SimCLR + HEX step spends its time, against SimCLR: per step, the wall
    time, the CUDA kernels launched, the ops with the most device (else CPU) time, and
    the ops whose time grew the most with HEX. Issue 22's HEX on/off of 1.34 was 3x what
    the loss alone costs; this says where the rest goes."""
    out: dict[str, Any] = {"steps": steps, "width": width, "batch": batch}
    per_op: dict[str, dict[str, tuple[float, float]]] = {}
    device = torch.cuda.is_available()
    key = "self_device_time_total" if device else "self_cpu_time_total"
    for name, extra in (("simclr", "hex.enabled=false"), ("simclr-hex", "hex.enabled=true")):
        cb = ProfileSteps(2, 2 + steps)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pretrain(study_size_run(tmp, name, width, batch, steps, dry, data, extra), [cb])
        events = cb.prof.key_averages()
        per_op[name] = {
            e.key[:80]: (e.count / steps, float(getattr(e, key, 0.0)) / steps / 1e3) for e in events
        }
        kernels = sum(1 for e in cb.prof.events() if e.device_type.name == "CUDA")
        top = sorted(per_op[name].items(), key=lambda kv: -kv[1][1])[:15]
        out[name] = {
            "ms_per_step": cb.seconds / steps * 1e3,
            "kernels_per_step": kernels / steps if device else None,
            "cpu_ops_per_step": sum(e.count for e in events) / steps,
            "top": [{"op": op, "calls_per_step": c, "ms_per_step": ms} for op, (c, ms) in top],
        }
    off, on = per_op["simclr"], per_op["simclr-hex"]
    grew = {op: (c, ms - off.get(op, (0.0, 0.0))[1], c - off.get(op, (0.0, 0.0))[0])
            for op, (c, ms) in on.items()}  # fmt: skip
    out["grew_with_hex"] = [
        {"op": op, "calls_per_step": c, "more_calls_per_step": dc, "more_ms_per_step": dms}
        for op, (c, dms, dc) in sorted(grew.items(), key=lambda kv: -kv[1][1])[:15]
    ]
    return out


def loss_speed(
    sizes: list[int], repeats: int, device: str, res: Results | None = None
) -> list[dict[str, Any]]:
    """Forward + backward of each loss in ``benchmarks/loss_speed.py`` (its timer: CUDA
    events on a GPU; the losses called alternately), and the number of CUDA kernels
    launched (profiler). The compiled
    entries compile once per size, so each finished size is saved at once (``res``)."""
    rows: list[dict[str, Any]] = []
    for b2 in sizes:
        makes = LOSSES | (GPU_ONLY if device == "cuda" else {})
        times = median_times(
            {name: make() for name, make in makes.items()}, b2 // 2, repeats, device
        )
        for name, make in makes.items():
            ms = times[name] * 1e3
            rows.append({"2B": b2, "loss": name, "ms": ms, "kernels": _kernels(make, b2, device)})
        base = next(r["ms"] for r in rows if r["loss"] == "infonce" and r["2B"] == b2)
        for r in rows:
            if r["2B"] == b2:
                r["ratio"] = r["ms"] / base
        if res is not None:
            res.put("loss_speed", rows)
    return rows


def _kernels(make: Any, b2: int, device: str) -> int | None:
    """CUDA kernels of one forward + backward (after a warm-up call)."""
    if device != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    fn = make().to(device)
    z0 = torch.randn(b2 // 2, 128, device=device, requires_grad=True)
    z1 = torch.randn(b2 // 2, 128, device=device, requires_grad=True)
    fn(z0, z1).backward()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(z0, z1).backward()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type.name == "CUDA")


def markdown(data: dict[str, Any]) -> str:
    lines = ["# GPU check", "", f"`{json.dumps(data.get('environment', {}))}`", ""]
    tests = data.get("gpu_tests")
    if tests:
        lines += [f"GPU tests: {tests['counts']} in {tests['seconds']} s", ""]
        smoke = {k: v for k, v in tests["cases"].items() if k.startswith("test_every_method")}
        if smoke:
            lines += ["| test | outcome | loss |", "|---|---|---|"]
            lines += [f"| {k} | {v['outcome']} | {v.get('loss', '')} |" for k, v in smoke.items()]
            lines.append("")
    syncs = data.get("host_syncs")
    if syncs:
        lines += [
            f"Host syncs per step (SimCLR + HEX, width {syncs['width']}, batch {syncs['batch']}, "
            f"{syncs['steps']} steps without logging): torch sync debug mode "
            f"{syncs['cuda_sync_warnings_per_step']:.2f}, op counter "
            f"{syncs['counted_ops_per_step']:.2f}; {syncs['img_per_s']:.0f} img/s",
            "",
        ]
    for key in ("train_speed", "train_speed_fused", "train_speed_compiled"):
        if speed := data.get(key):
            lines += [
                "| setting | run | img/s | spread | host ms | GPU ms | HEX on/off |",
                "|---|---|---|---|---|---|---|",
            ]
            ratio = {(q["setting"], q["run"]): q["hex_on_over_off"] for q in speed["ratios"]}
            for r in speed["rows"]:
                on_off = ratio.get((r["setting"], r["run"]))
                gpu = r.get("gpu_ms")
                lines.append(
                    f"| {r['setting']} | {r['run']} | {r['img_per_s']:.0f} | "
                    f"{r.get('spread', float('nan')):.1%} | {r.get('host_ms', float('nan')):.1f} | "
                    f"{'' if gpu is None else f'{gpu:.1f}'} | "
                    f"{'' if on_off is None else f'{on_off:.3f}'} |"
                )
            lines.append("")
    if prof := data.get("step_profile"):
        off, on = prof["simclr"], prof["simclr-hex"]
        lines += [
            f"Step profile (width {prof['width']}, batch {prof['batch']}): SimCLR "
            f"{off['ms_per_step']:.1f} ms/step, {off['kernels_per_step']} kernels; SimCLR + HEX "
            f"{on['ms_per_step']:.1f} ms/step, {on['kernels_per_step']} kernels",
            "",
            "| op: grew the most with HEX | calls/step | more calls | more ms/step |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {g['op']} | {g['calls_per_step']:.0f} | {g['more_calls_per_step']:+.0f} | "
            f"{g['more_ms_per_step']:+.2f} |"
            for g in prof["grew_with_hex"]
        ]
        lines.append("")
    loss = data.get("loss_speed")
    if loss:
        lines += ["| 2B | loss | ms | ratio | kernels |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['2B']} | {r['loss']} | {r['ms']:.3f} | {r['ratio']:.2f} | {r['kernels']} |"
            for r in loss
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (checks the script)")
    ap.add_argument("--test-timeout", type=int, default=150, help="seconds for pytest -m gpu")
    ap.add_argument(
        "--data", default="../shared/data/tiny-imagenet-hier50.tar.gz", help="the study's data"
    )
    ap.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure, in this order (default: all; e.g. loss_speed train_speed "
        "for a call that only re-measures speed)",
    )
    args = ap.parse_args()
    dry = args.dry_run
    res = Results(args.out)
    res.put("environment", environment())
    width, batch, steps = (8, 32, 3) if dry else (64, 512, 20)
    sizes = [64, 128] if dry else [256, 512, 1024, 2048, 4096, 8192]
    sections = {
        "host_syncs": lambda: host_syncs(width, batch, steps, dry, args.data),
        "loss_speed": lambda: loss_speed(sizes, 2 if dry else 20, "cpu" if dry else "cuda", res),
        "train_speed": lambda: train_speed(args.out, args.data, 300, dry),
        "train_speed_fused": lambda: train_speed(args.out, args.data, 300, dry, "fused"),
        "train_speed_compiled": lambda: train_speed(args.out, args.data, 300, dry, "compiled"),
        "step_profile": lambda: step_profile(width, batch, min(steps, 5), dry, args.data),
        "gpu_tests": lambda: gpu_tests(args.out, args.test_timeout, dry),
    }
    for key in args.sections:
        fn = sections[key]
        start = time.time()
        try:
            res.put(key, fn())
        except Exception as err:  # record and go on: the other sections still measure
            res.put(key + "_error", f"{type(err).__name__}: {err}"[:2000])
        print(f"[device_check] {key}: {time.time() - start:.1f} s", flush=True)
    text = markdown(res.data)
    (args.out / "gpu_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
