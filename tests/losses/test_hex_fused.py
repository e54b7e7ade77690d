"""The fused HEX path (plain tensor ops for torch.compile) against the dense path."""

from __future__ import annotations

import pytest
import torch

from hexssl.losses import HEXDenominator, InfoNCE
from hexssl.losses.hex import fused_log_denominator
from hexssl.losses.infonce import exclude_
from hexssl.run.hostsync import sync_free_paths

from .conftest import assert_same_loss_grads_stats, clustered
from .test_hex_dense import HEX_CONFIGS, MORE, _kwargs
from .test_hex_grad_and_edges import T


def _run(name: str, fused: bool, pairing: str, queue: bool) -> tuple:
    z0, z1, _ = clustered(10, d=6, seed=5)
    z0.requires_grad_()
    z1.requires_grad_()
    neg = clustered(7, d=6, seed=6)[0] if queue else None
    den = HEXDenominator(dense=True, fused=fused, compile_backend="eager", **_kwargs(name))
    fn = InfoNCE(T, den)
    fn.set_progress(3.0)
    loss = fn(z0, z1, pairing=pairing, negatives=neg)
    loss.backward()
    return float(loss), z0.grad, z1.grad, {k: float(v) for k, v in fn.stats.items()}


@pytest.mark.parametrize("name", HEX_CONFIGS + sorted(MORE))
@pytest.mark.parametrize("pairing,queue", [("simclr", False), ("cross", True)])
def test_fused_path_equals_dense_path(name, pairing, queue):
    want = _run(name, False, pairing, queue)
    got = _run(name, True, pairing, queue)
    assert_same_loss_grads_stats(got, want, grad_rtol=1e-9)


def test_fused_path_compiles_as_one_graph():
    """fullgraph=True: no graph break, so a compiler sees the whole loss at once."""
    torch._dynamo.reset()  # the tests above compiled it for many settings (recompile limit)
    sim = torch.randn(12, 12, dtype=torch.float64).clamp(-1, 1).requires_grad_()
    pos, self_idx = torch.arange(12).roll(6)[:, None], torch.arange(12)[:, None]
    lp = sim.gather(1, pos).squeeze(1) / T
    logits = exclude_(sim / T, pos, self_idx)
    H = logits > 0.2 / T
    hp = (1.0, 0.1, 1.0, 1.0 / T, False)
    args = (logits, lp, H, torch.ones_like(lp), hp)
    compiled = torch.compile(fused_log_denominator, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args)[0], fused_log_denominator(*args)[0])
    (grad,) = torch.autograd.grad(compiled(*args)[0].sum(), sim, retain_graph=True)
    (want,) = torch.autograd.grad(fused_log_denominator(*args)[0].sum(), sim)
    torch.testing.assert_close(grad, want)


def test_a_compiler_failure_warns_once_and_runs_eagerly():
    def broken(gm, example_inputs):  # a torch.compile backend that always fails
        raise RuntimeError("no compiler here")

    z0, z1, _ = clustered(8, d=4)
    fused = InfoNCE(T, HEXDenominator(fused=True, compile_backend=broken))  # type: ignore[arg-type]
    plain = InfoNCE(T, HEXDenominator(dense=True))
    with pytest.warns(RuntimeWarning, match="hex.fused: torch.compile failed"):
        first = float(fused(z0, z1))
    assert first == pytest.approx(float(plain(z0, z1)), rel=1e-12)
    assert float(fused(z0, z1)) == pytest.approx(first, rel=1e-12)  # no second warning


def test_hex_fused_is_a_config_key():
    from hexssl.config import load_config
    from hexssl.run.build import build_denominator

    cfg = load_config(None, ["hex.enabled=true", "hex.fused=true"])
    den = build_denominator(cfg.hex, max_epochs=10)
    assert isinstance(den, HEXDenominator) and den.fused and den.dense


@pytest.mark.parametrize("warmup", [0.0, 0.05])
def test_a_whole_compiled_hex_loss_does_not_recompile_as_training_progresses(warmup):
    """``torch.compile(InfoNCE(T, HEXDenominator(...)))`` in a user's loop: progress moves
    at every step and the statistics are read every few calls, yet the loss compiles
    into a bounded number of graphs (first call of a step or not, warm-up or not; it
    compiled at every call when progress and the call count were Python numbers that
    forward read) and gives the eager loss."""
    graphs = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    make = lambda: InfoNCE(T, HEXDenominator("adaptive", dense=True, warmup_epochs=warmup))  # noqa: E731
    loss, eager = make(), make()
    compiled = torch.compile(loss, backend=backend, fullgraph=True, dynamic=False)
    z0, z1, _ = clustered(8, d=6, seed=9)
    with sync_free_paths():  # the GPU code path (the CPU's index checks read values back)
        for i in range(12):
            loss.set_progress(0.01 * i)
            eager.set_progress(0.01 * i)
            assert float(compiled(z0, z1)) == pytest.approx(float(eager(z0, z1)), rel=1e-12)
            if i % 3 == 2:  # a logging step reads the statistics
                got, want = loss.step_stats(), eager.step_stats()
                assert float(got[1]) == float(want[1]) == 3
                assert {k: float(v) for k, v in got[0].items()} == pytest.approx(
                    {k: float(v) for k, v in want[0].items()}
                )
    assert len(graphs) <= (4 if warmup else 2), len(graphs)


def test_the_dense_hex_loss_compiles_forward_and_backward_as_one_graph():
    """The GPU path (hand-written backward, statistics off as between logging steps)
    captures with fullgraph=True, backward included, and gives eager's loss and grads."""
    torch._dynamo.reset()
    loss = InfoNCE(T, HEXDenominator("adaptive", dense=True))
    loss.denominator.record_stats = False
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager", dynamic=False)
    z0, z1, _ = clustered(8, d=6, seed=3)
    z0.requires_grad_()
    with sync_free_paths():
        got = compiled(z0, z1)
        (got_grad,) = torch.autograd.grad(got, z0)
        want = loss(z0, z1)
        (want_grad,) = torch.autograd.grad(want, z0)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    torch.testing.assert_close(got_grad, want_grad)
