"""HEX's relatives: two gloo processes with B/2 samples each give the loss and
gradients of one process with B (DCLW's weights are normalised over the global batch)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from hexssl.losses import (
    DebiasedDenominator,
    DecoupledDenominator,
    HardNegativeDenominator,
    InfoNCE,
)

from .conftest import clustered
from .test_distributed import spawn_gloo

WORLD, B = 2, 12
CASES = {
    "decoupled_simclr": (DecoupledDenominator, {}, "simclr"),
    "decoupled_weighted_simclr": (DecoupledDenominator, dict(sigma=0.5), "simclr"),
    "decoupled_weighted_cross": (DecoupledDenominator, dict(sigma=0.3), "cross"),
    "debiased_simclr": (DebiasedDenominator, dict(tau_plus=0.3), "simclr"),
    "hard_simclr": (HardNegativeDenominator, dict(beta=1.0, tau_plus=0.1), "simclr"),
    "hard_cross": (HardNegativeDenominator, dict(beta=2.0, tau_plus=0.0), "cross"),
}


def loss_and_grads(name: str, z0: torch.Tensor, z1: torch.Tensor):  # type: ignore[no-untyped-def]
    cls, kw, pairing = CASES[name]
    a, c = z0.clone().requires_grad_(), z1.clone().requires_grad_()
    loss = InfoNCE(0.2, cls(**kw))(a, c, pairing=pairing)
    loss.backward()
    return float(loss.detach()), a.grad, c.grad


def worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        z0, z1, _ = clustered(B, seed=4)
        sl = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        for name in CASES:
            loss, g0, g1 = loss_and_grads(name, z0[sl], z1[sl])
            out[(name, rank)] = (loss, g0 / WORLD, g1 / WORLD)  # DDP averages gradients
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results() -> dict:
    return spawn_gloo(worker, WORLD)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_match_one(name, two_process_results):
    out = [two_process_results[(name, r)] for r in range(WORLD)]
    z0, z1, _ = clustered(B, seed=4)
    loss, g0, g1 = loss_and_grads(name, z0, z1)
    assert sum(o[0] for o in out) / WORLD == pytest.approx(loss, rel=1e-9)
    torch.testing.assert_close(torch.cat([o[1] for o in out]), g0)
    torch.testing.assert_close(torch.cat([o[2] for o in out]), g1)
