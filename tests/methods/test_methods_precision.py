"""Mixed precision, channels_last and torch.compile (issue 8).

Every method trains under ``bf16-mixed`` on CPU with HEX on; augmentation stays in
float32 and the InfoNCE / HEX similarities are float32 under autocast. The speed
settings do not change checkpoint keys, and compilation falls back to eager once.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hexssl.config import ConfigError, load_config
from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.methods import METHODS
from hexssl.run.speed import (
    apply_speed_settings,
    check_device_precision,
    compile_forward,
    precision_hint,
)

from .helpers import build, fast_fit, first_batch, tiny_config


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_under_bf16_mixed(name: str) -> None:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, "hex.enabled=true"))
    apply_speed_settings(method, channels_last=True, compile=False)
    metrics = fast_fit(method, dm, "bf16-mixed")
    assert math.isfinite(float(metrics["train/loss"]))
    assert "train/hex/eps" in metrics


def test_augmentation_runs_in_float32_inside_autocast() -> None:
    method, dm = build(tiny_config("simclr"))
    images = first_batch(dm)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        views = method.augmented_views(images)
    assert all(v.dtype == torch.float32 for v in views)


def test_similarities_are_float32_under_autocast() -> None:
    seen: dict[str, torch.dtype] = {}

    class Spy(HEXDenominator):
        def forward(self, sim, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen["sim"] = sim.dtype
            return super().forward(sim, *args, **kwargs)

    loss_fn = InfoNCE(0.1, Spy(warmup_epochs=0.0))
    z = torch.randn(16, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(z, z.roll(1, 0))
    assert seen["sim"] == torch.float32 and loss.dtype == torch.float32


@pytest.mark.parametrize("value", ["bf16-true", "16-true", "64", "17"])
def test_unsupported_precision_is_refused_at_load(value: str) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        load_config(None, [f"trainer.precision={value}"])


def test_precision_aliases_are_canonical() -> None:
    assert load_config(None, ["trainer.precision=32-true"]).trainer.precision == "32"
    assert load_config(None, ["trainer.precision=32"]).trainer.precision == "32"


def test_fp16_mixed_needs_a_gpu() -> None:
    with pytest.raises(ConfigError, match="bf16-mixed"):
        check_device_precision("16-mixed", "cpu")


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(fast: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("hexssl.run.speed.cpu_has_fast_bf16", lambda: fast)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_device_precision("bf16-mixed", "cpu")
        check_device_precision("32", "cpu")
    assert len([w for w in caught if "emulated" in str(w.message)]) == (0 if fast else 1)


@pytest.mark.parametrize(
    ("precision", "accelerator", "fast", "tip"),
    [
        ("32", "cpu", True, True),
        ("32", "cpu", False, False),
        ("bf16-mixed", "cpu", True, False),
        ("32", "gpu", True, False),
    ],
)
def test_fp32_on_a_native_bf16_cpu_gets_a_tip(  # type: ignore[no-untyped-def]
    precision: str, accelerator: str, fast: bool, tip: bool, monkeypatch
) -> None:
    monkeypatch.setattr("hexssl.run.speed.cpu_has_fast_bf16", lambda: fast)
    line = precision_hint(precision, accelerator)
    assert (line is not None) == tip
    if line is not None:
        assert "trainer.precision=bf16-mixed" in line and "docs/speed.md" in line


def test_speed_settings_keep_checkpoint_keys() -> None:
    torch.manual_seed(0)
    wide = "backbone.kwargs={stem: cifar, width: 8}"  # width 4 keeps NCHW (see below)
    plain, _ = build(tiny_config("moco_v3", wide))
    fast, _ = build(tiny_config("moco_v3", wide))
    apply_speed_settings(fast, channels_last=True, compile=True)
    assert list(plain.state_dict()) == list(fast.state_dict())
    conv = fast.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    fast.load_state_dict(plain.state_dict())  # a checkpoint of either loads into the other
    plain.load_state_dict(fast.state_dict())


def test_compile_failure_falls_back_to_eager_with_one_warning() -> None:
    def broken_backend(gm, example_inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no compiler here")

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    x = torch.randn(5, 4)
    expected = model(x)
    compile_forward(model, "toy", backend=broken_backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [model(x) for _ in range(3)]
    assert sum("torch.compile of toy failed" in str(w.message) for w in caught) == 1
    assert all(torch.equal(o, expected) for o in outs)


def test_channels_last_gives_the_same_loss() -> None:
    """NHWC is a layout change only: the same batch gives the same loss (fp32 rounding)."""
    torch.manual_seed(0)
    method, dm = build(tiny_config("simclr", "hex.enabled=true"))
    images, _, _, _ = first_batch(dm)
    method.eval()
    with torch.no_grad():
        base = float(method.ssl_step(method.augmented_views(images)).loss)
        apply_speed_settings(method, channels_last=True, compile=False)
        nhwc = float(method.ssl_step(method.augmented_views(images)).loss)
    assert nhwc == pytest.approx(base, rel=1e-5)


@pytest.mark.slow
def test_compiled_model_gives_the_eager_loss() -> None:
    """inductor's fused kernels reorder float sums: equal to 1e-4 relative in fp32."""
    torch.manual_seed(0)
    method, dm = build(tiny_config("simclr", "hex.enabled=true"))
    images, _, _, _ = first_batch(dm)
    views = method.augmented_views(images)
    method.eval()
    with torch.no_grad():
        eager = float(method.ssl_step(views).loss)
        apply_speed_settings(method, channels_last=False, compile=True)
        compiled = float(method.ssl_step(views).loss)
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_channels_last_is_skipped_where_torch_cpu_corrupts_memory() -> None:
    """Strided 1x1 convs with < 8 input channels crash in NHWC backward (torch 2.13 CPU)."""
    method, _ = build(tiny_config("simclr"))  # width 4: downsampling 1x1 convs of 4 channels
    apply_speed_settings(method, channels_last=True, compile=False)
    assert not method.channels_last
    assert method.backbone.conv1.weight.is_contiguous()


@pytest.mark.parametrize("name", ["simclr", "moco_v2"])
def test_compile_loss_compiles_each_contrastive_loss_and_keeps_its_value(name: str) -> None:
    """trainer.compile_loss: every InfoNCE module (HEX inside) runs compiled, with the
    eager loss; nothing else is compiled and the checkpoint keys do not change."""
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, "hex.enabled=true", "hex.warmup_epochs=0"))
    twin, _ = build(tiny_config(name, "hex.enabled=true", "hex.warmup_epochs=0"))
    twin.load_state_dict(method.state_dict())
    images, _, _, _ = first_batch(dm)
    torch.manual_seed(1)
    views = method.augmented_views(images)
    keys = list(method.state_dict())
    done = apply_speed_settings(method, False, False, backend="eager", compile_loss=True)
    losses = [n for n, m in method.named_modules() if isinstance(m, InfoNCE)]
    assert done == losses and losses
    method.eval()
    twin.eval()
    with torch.no_grad():
        compiled = float(method.ssl_step(views).loss)
        eager = float(twin.ssl_step(views).loss)
    assert compiled == pytest.approx(eager, rel=1e-6)
    assert list(method.state_dict()) == keys
