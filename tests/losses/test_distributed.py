"""Two gloo processes with B/2 samples each give the loss and gradients of one with B."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hexssl.losses import HEXDenominator, InfoNCE

from .conftest import clustered

WORLD, B = 2, 12
CASES = {
    "hex_paper_simclr": (dict(q=0.9, beta=1.0, tau_plus=0.1), "simclr"),
    "hex_reference_simclr": (dict(variant="reference", q=0.9), "simclr"),
    "hex_paper_cross": (dict(q=0.8, beta=2.0), "cross"),
    "infonce_simclr": (None, "simclr"),
}


def make_loss(name: str) -> InfoNCE:
    kw, _ = CASES[name]
    return InfoNCE(0.1, None if kw is None else HEXDenominator(**kw))


def full_batch(name: str) -> tuple[float, torch.Tensor, torch.Tensor, float]:
    z0, z1, _ = clustered(B, seed=4)
    z0.requires_grad_()
    z1.requires_grad_()
    fn = make_loss(name)
    loss = fn(z0, z1, pairing=CASES[name][1])
    loss.backward()
    eps = float(fn.stats.get("eps", torch.tensor(0.0)))
    return float(loss.detach()), z0.grad, z1.grad, eps


def worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        z0, z1, _ = clustered(B, seed=4)
        sl = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        for name, (_, pairing) in CASES.items():
            a, c = z0[sl].clone().requires_grad_(), z1[sl].clone().requires_grad_()
            fn = make_loss(name)
            loss = fn(a, c, pairing=pairing)
            loss.backward()
            eps = float(fn.stats.get("eps", torch.tensor(0.0)))
            out[(name, rank)] = (float(loss), a.grad / WORLD, c.grad / WORLD, eps)  # DDP: mean
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_gloo(target: Callable[[int, int, dict], None], world: int = WORLD) -> dict:
    """Run ``target(rank, port, out)`` in ``world`` processes; what they put in ``out``."""
    out = mp.Manager().dict()
    mp.spawn(target, args=(free_port(), out), nprocs=world, join=True)
    return {k: out[k] for k in out}


@pytest.fixture(scope="module")
def two_process_results() -> dict:
    return spawn_gloo(worker)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_match_one(name, two_process_results):
    out = {r: two_process_results[(name, r)] for r in range(WORLD)}
    loss, g0, g1, eps = full_batch(name)
    assert sum(out[r][0] for r in range(WORLD)) / WORLD == pytest.approx(loss, rel=1e-9)
    torch.testing.assert_close(torch.cat([out[r][1] for r in range(WORLD)]), g0)
    torch.testing.assert_close(torch.cat([out[r][2] for r in range(WORLD)]), g1)
    for r in range(WORLD):
        assert out[r][3] == pytest.approx(eps, rel=1e-12)
