"""What this machine offers a run: ``hexssl env``.

One report for bug reports and for choosing settings: versions, the CPU's vector and
bf16 capabilities, CUDA devices, which optional packages are installed (read from
package metadata, never imported: torchvision breaks on a CPU-only torch; "-" when
absent), and the precision that is fastest here according to ``docs/speed.md``.

    hexssl env            # readable lines
    hexssl env --json     # the same as one JSON object
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import hexssl
from hexssl.run.speed import cpu_has_fast_bf16

PACKAGES = ("lightning", "torchvision", "timm", "umap-learn", "wandb", "tensorboard", "kornia")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_summary() -> str:
    """One line naming the CPU, its vector unit and native bf16, for result files.

    Example:
        >>> "native bf16" in machine_summary() or "no native bf16" in machine_summary()
        True
    """
    bf16 = "native bf16" if cpu_has_fast_bf16() else "no native bf16"
    return f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {bf16}"


def installed(package: str) -> str | None:
    """The installed version of ``package``, or None; the package is not imported."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cuda_devices() -> list[dict[str, Any]]:
    """Name, memory and bf16 support of each visible CUDA device ([] without CUDA)."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append({
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": props.major >= 8,  # Ampere and later
        })  # fmt: skip
    return out


def recommended_precision(native_bf16: bool, gpus: list[dict[str, Any]]) -> tuple[str, str]:
    """``(trainer.precision, why)``: the fastest setting here per docs/speed.md."""
    if gpus:
        if all(g["bf16"] for g in gpus):
            return "bf16-mixed", "CUDA with bf16 (Ampere or later)"
        return "16-mixed", "CUDA without bf16: fp16 autocast with a gradient scaler"
    if native_bf16:
        return "bf16-mixed", "native bf16 on this CPU: measured 1.7x fp32 on an AMX Xeon"
    return "32", "no native bf16 on this CPU: bf16 is emulated, measured 12x slower"


def environment() -> dict[str, Any]:
    """Everything ``hexssl env`` reports, as plain JSON-able values."""
    native = cpu_has_fast_bf16()
    gpus = cuda_devices()
    precision, why = recommended_precision(native, gpus)
    return {
        "hexssl": hexssl.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": native,
        "cuda": torch.version.cuda,
        "gpus": gpus,
        "packages": {name: installed(name) for name in PACKAGES},
        "recommended_precision": precision,
        "recommended_because": why,
    }


def format_environment(env: dict[str, Any]) -> str:
    """The report as aligned ``key: value`` lines."""
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})"
                     for g in env["gpus"]) or "none"  # fmt: skip
    packages = ", ".join(f"{k} {v}" if v else f"{k} -" for k, v in env["packages"].items())
    rows = [
        ("hexssl", env["hexssl"]),
        ("python", env["python"]),
        ("platform", env["platform"]),
        ("torch", f"{env['torch']} ({env['torch_threads']} threads, CUDA {env['cuda'] or '-'})"),
        ("cpu", f"{env['cpu']} ({env['cpu_capability']})"),
        ("native bf16", "yes (AMX or AVX512-BF16)" if env["cpu_native_bf16"] else "no"),
        ("gpus", gpus),
        ("packages", packages),
        ("precision", f"trainer.precision={env['recommended_precision']} "
                      f"({env['recommended_because']})"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:>{width}}: {v}" for k, v in rows) + "\n"


def env_report(as_json: bool = False) -> str:
    """The text that ``hexssl env [--json]`` prints."""
    env = environment()
    return json.dumps(env, indent=2) + "\n" if as_json else format_environment(env)
