"""The CUDA path (``pytest -m gpu``; skipped without a CUDA device).

HEX on CUDA against a float64 CPU reference, every method at every precision with HEX
on, an exact kill/resume, features and kNN on the device, a timm backbone, and no host
synchronisation inside a training step (``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.run.train import pretrain, resume
from tests.faults.helpers import InterruptedRunError, StopAt, assert_same_state, checkpoint
from tests.faults.helpers import tiny_run as cpu_tiny_run
from tests.losses.conftest import clustered
from tests.methods.helpers import TINY_PARAMS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
GPU = ["trainer.accelerator=gpu", "trainer.devices=1", "data.on_device=true"]
# deterministic cuBLAS (the exact resume) needs this before the first CUDA call
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture
def no_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full fp32 matmuls: a training run earlier in this process may have enabled TF32."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def tiny_run(tmp: Any, name: str, method: str = "simclr", *extra: str) -> Any:
    return cpu_tiny_run(tmp, name, method, *GPU, *extra)


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("autocast", [False, True])
def test_hex_on_cuda_matches_a_float64_cpu_reference(variant, autocast, no_tf32):
    z0, z1, _ = clustered(64, d=32, seed=3)

    def loss_and_grad(device: str, dtype: torch.dtype) -> tuple[float, torch.Tensor]:
        a = z0.detach().to(device, dtype).requires_grad_()  # a fresh leaf on each device
        b = z1.to(device, dtype)
        fn = InfoNCE(0.1, HEXDenominator(variant=variant, q=0.9)).to(device)
        fn.set_progress(5.0)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast and device == "cuda"):
            loss = fn(a, b)
        loss.backward()
        assert a.grad is not None
        return float(loss), a.grad.double().cpu()

    want, want_grad = loss_and_grad("cpu", torch.float64)
    got, got_grad = loss_and_grad("cuda", torch.float32)
    tol = 2e-2 if autocast else 1e-4  # bf16 projections vs float64
    assert got == pytest.approx(want, rel=tol)
    torch.testing.assert_close(got_grad, want_grad, rtol=tol * 10, atol=tol * 1e-2)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("method", sorted(TINY_PARAMS))
def test_every_method_trains_on_cuda_with_hex(tmp_path, method, precision, record_property):
    cfg = tiny_run(tmp_path, "r", method, "hex.enabled=true", f"trainer.precision={precision}")
    summary = pretrain(cfg)
    record_property("loss", f"{summary['train/loss']:.4f}")  # the device check's smoke table
    assert summary["steps"] == 4
    assert torch.isfinite(torch.tensor(summary["train/loss"]))


def test_kill_and_resume_on_cuda_is_exact(tmp_path):
    exact = ["hex.enabled=true", "trainer.deterministic=true", "trainer.cudnn_benchmark=false"]
    pretrain(tiny_run(tmp_path, "ref", "simclr", *exact))
    with pytest.raises(InterruptedRunError):
        pretrain(tiny_run(tmp_path, "cut", "simclr", *exact), [StopAt(2)])
    resume(tmp_path / "cut")
    assert_same_state(checkpoint(tmp_path / "ref"), checkpoint(tmp_path / "cut"))


def test_features_and_knn_stay_on_the_device(tmp_path):
    from hexssl.run.eval_jobs import encoder_features, knn_summary, open_run_encoder

    pretrain(tiny_run(tmp_path, "r", "simclr", "eval.knn_at_end=true"))
    enc = open_run_encoder(tmp_path / "r", [])
    train, val = encoder_features(enc)
    assert train[0].is_cuda and val[0].is_cuda
    res = knn_summary(train, val, [5], [0.07])
    assert 0.0 <= res["knn_class_top1"] <= 100.0


def test_a_timm_backbone_trains_a_step(tmp_path):
    pytest.importorskip("timm")
    cfg = tiny_run(tmp_path, "t", "simclr", "backbone.name=timm:resnet18", "backbone.kwargs={}")
    assert pretrain(cfg)["steps"] == 4


class SyncErrors(Callback):
    """``set_sync_debug_mode('error')`` inside steps 1-4: any host sync raises there."""

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if 1 <= trainer.global_step <= 4 else "default")

    def on_train_batch_end(self, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("method", sorted(TINY_PARAMS))
def test_no_host_sync_inside_a_cuda_training_step(tmp_path, method):
    quiet = [
        "data.options={n_super: 2, n_per_super: 2, n_per_class: 24, image_size: 16}",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1000",
        "trainer.checkpoint_every_n_steps=1000",
        "hex.enabled=true",
    ]
    try:
        pretrain(tiny_run(tmp_path, "s", method, *quiet), [SyncErrors()])
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_whole_hex_loss_compiles_as_one_graph_on_cuda(no_tf32):
    """The GPU path has no host read-back: fullgraph capture, eager's loss and gradient,
    and no recompilation as progress moves (issue 22's whole-loss compile)."""
    z0, z1, _ = clustered(64, d=32, seed=5)
    make = lambda: InfoNCE(0.1, HEXDenominator(q=0.9)).cuda()  # noqa: E731
    loss, eager = make(), make()
    compiled = torch.compile(loss, fullgraph=True, dynamic=False)
    a, b = z0.float().cuda().requires_grad_(), z1.float().cuda()
    for i in range(6):
        loss.set_progress(1.0 + 0.1 * i)
        eager.set_progress(1.0 + 0.1 * i)
        got = compiled(a, b)
        (grad,) = torch.autograd.grad(got, a)
        want = eager(a, b)
        (want_grad,) = torch.autograd.grad(want, a)
        assert float(got) == pytest.approx(float(want), rel=1e-4)
        torch.testing.assert_close(grad, want_grad, rtol=1e-3, atol=1e-6)


def test_compile_loss_trains_on_cuda(tmp_path):
    extra = ["hex.enabled=true", "trainer.compile_loss=true", "trainer.precision=bf16-mixed"]
    summary = pretrain(tiny_run(tmp_path, "c", "simclr", *extra))
    assert summary["steps"] > 0 and torch.isfinite(torch.tensor(summary["train/loss"]))
