"""Speed settings of a run: memory format, torch.compile and the precision check.

Neither setting changes a checkpoint: ``channels_last`` only re-lays the 4-D weights in
memory, and compilation replaces a module's ``forward`` on the instance, so parameter
and buffer names stay those of the eager model (resume and export are unaffected).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from hexssl.errors import ConfigError
from hexssl.losses.infonce import InfoNCE

COMPILED_PARTS = ("backbone", "projector", "predictor")  # the heavy, shape-stable modules


def to_channels_last(x: Tensor) -> Tensor:
    """NHWC memory layout for 4-D image batches; other tensors are returned unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def compile_forward(module: nn.Module, name: str, backend: str | Callable = "inductor") -> None:
    """Replace ``module.forward`` by a compiled one that falls back to eager on failure.

    The first failure (a missing compiler, an unsupported op) prints one warning and
    every later call runs eagerly. The state_dict keys do not change.
    """
    eager = module.forward
    compiled = torch.compile(eager, backend=backend)
    failed = False

    def forward(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if not failed:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # any compiler error: keep training, eagerly
                failed = True
                msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                warnings.warn(
                    f"torch.compile of {name} failed ({type(err).__name__}: {msg}); "
                    f"{name} runs eagerly from now on (set trainer.compile=false to silence)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return eager(*args, **kwargs)

    module.forward = forward


def apply_speed_settings(
    model: nn.Module,
    channels_last: bool,
    compile: bool,
    backend: str | Callable = "inductor",
    compile_loss: bool = False,
) -> list[str]:
    """Set the memory format and compile the backbone and heads (``compile``) and the
    contrastive losses (``compile_loss``); returns what was compiled."""
    # Test-sized models (ResNet width < 8) stay NCHW, silently: nothing for a user to do.
    channels_last = channels_last and channels_last_is_safe(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if hasattr(model, "channels_last"):
        setattr(model, "channels_last", channels_last)  # inputs follow the weights' layout  # noqa: B010
    done = []
    for name in COMPILED_PARTS if compile else ():
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            compile_forward(part, name, backend)
            done.append(name)
    for name, module in model.named_modules() if compile_loss else ():
        if isinstance(module, InfoNCE):  # HEX or a relative as its denominator, or neither
            compile_forward(module, f"the loss {name}", backend)
            done.append(name)
    return done


def apply_backend_settings(accelerator: str, cudnn_benchmark: bool, tf32: bool) -> None:
    """GPU kernel choices of a run (``trainer.cudnn_benchmark``, ``trainer.tf32``).

    Process-wide torch settings, applied at the start of a GPU run and left unchanged
    for CPU runs (where neither exists).
    """
    if runs_on_cpu(accelerator):
        return
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def channels_last_is_safe(model: nn.Module) -> bool:
    """False when NHWC would hit the CPU bug of strided 1x1 convs with < 8 input channels.

    Found here: ``Conv2d(c, 2c, 1, stride=2)`` with c < 8, channels_last, one thread:
    "double free or corruption" in backward (torch 2.13.0 CPU). ResNets narrower than
    width 8 have such downsampling convs; widths >= 8 and 3x3 / stride-1 convs are fine.
    """
    return not any(
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and max(m.stride) > 1
        and m.in_channels < 8
        for m in model.modules()
    )


def check_device_precision(precision: str, accelerator: str) -> None:
    """16-mixed needs a CUDA device: refuse it on CPU at start, in one line.

    bf16 on a CPU without native bf16 arithmetic (AMX or AVX512-BF16) is emulated and
    many times slower than fp32 (measured: 12x on an AVX2-only CPU): say so once.
    """
    on_cpu = runs_on_cpu(accelerator)
    if precision == "16-mixed" and on_cpu:
        raise ConfigError(
            "trainer.precision='16-mixed' needs a GPU (fp16 autocast with a gradient "
            "scaler); on CPU use trainer.precision=bf16-mixed"
        )
    if precision == "bf16-mixed" and on_cpu and not cpu_has_fast_bf16():
        warnings.warn(
            "trainer.precision=bf16-mixed on a CPU without AMX or AVX512-BF16: bf16 is "
            "emulated here and trains several times slower than trainer.precision=32",
            RuntimeWarning,
            stacklevel=2,
        )


def runs_on_cpu(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` resolves to the CPU on this machine."""
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def precision_hint(precision: str, accelerator: str) -> str | None:
    """A one-line tip when an fp32 run could use this CPU's native bf16, else None.

    fp32 stays the default everywhere (results must not depend on the CPU a run lands
    on); this only says that the faster setting exists here.
    """
    if precision != "32" or not runs_on_cpu(accelerator) or not cpu_has_fast_bf16():
        return None
    return (
        "[hexssl] tip: this CPU computes bf16 natively (AMX or AVX512-BF16): "
        "trainer.precision=bf16-mixed ran SimCLR steps 1.7x faster than fp32 (both "
        "channels_last) on a 2-core AMX Xeon, accuracy within seed noise (docs/speed.md)"
    )


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if callable(fn) and fn():
            return True
    return False
