"""BYOL, Barlow Twins, VICReg and All4One's feature term: oracles, analytic cases, DDP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from hexssl.losses.all4one import feature_redundancy_loss
from hexssl.losses.barlow import BarlowTwinsLoss, off_diagonal
from hexssl.losses.byol import BYOLLoss, byol_loss
from hexssl.losses.vicreg import VICRegLoss


def views(b: int = 24, d: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g)
    return base + 0.3 * torch.randn(b, d, generator=g), 2 * base + torch.randn(b, d, generator=g)


# ----------------------------------------------------------------------------- oracles
def barlow_oracle(z0: Tensor, z1: Tensor, lam: float) -> Tensor:
    """The official code: BatchNorm1d(affine=False) in train mode, c = bn(z0)^T bn(z1) / B."""
    bn = nn.BatchNorm1d(z0.shape[1], affine=False)
    c = bn(z0).T @ bn(z1) / z0.shape[0]
    eye = torch.eye(c.shape[0], dtype=torch.bool)
    return (c[eye] - 1).pow(2).sum() + lam * c[~eye].pow(2).sum()


def vicreg_oracle(x: Tensor, y: Tensor) -> Tensor:
    """The official VICReg forward (sim 25, std 25, cov 1), one process."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = torch.sqrt(x.var(0) + 1e-4), torch.sqrt(y.var(0) + 1e-4)
    std_loss = F.relu(1 - std_x).mean() / 2 + F.relu(1 - std_y).mean() / 2
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
    eye = torch.eye(d, dtype=torch.bool)
    cov_loss = cov_x[~eye].pow(2).sum() / d + cov_y[~eye].pow(2).sum() / d
    return 25 * repr_loss + 25 * std_loss + cov_loss


def test_barlow_matches_the_official_formula() -> None:
    z0, z1 = views()
    torch.testing.assert_close(BarlowTwinsLoss()(z0, z1), barlow_oracle(z0, z1, 0.0051))
    torch.testing.assert_close(
        BarlowTwinsLoss(0.1, scale_loss=0.5)(z0, z1), 0.5 * barlow_oracle(z0, z1, 0.1)
    )


def test_barlow_analytic_cases() -> None:
    z = torch.randn(64, 4)
    # identical views: the diagonal of C is exactly 1 (up to BN's eps)
    assert float(BarlowTwinsLoss(lambda_offdiag=0.0)(z, z)) < 1e-8
    # independent views: the diagonal is near 0, so the loss is near D
    far = BarlowTwinsLoss(lambda_offdiag=0.0)(z, torch.randn(64, 4))
    assert 2.0 < float(far) <= 4.5


def test_off_diagonal() -> None:
    c = torch.arange(9.0).view(3, 3)
    assert off_diagonal(c).tolist() == [1, 2, 3, 5, 6, 7]


def test_vicreg_matches_the_official_formula() -> None:
    z0, z1 = views()
    torch.testing.assert_close(VICRegLoss()(z0, z1), vicreg_oracle(z0, z1))


def test_vicreg_analytic_cases() -> None:
    # whitened, identical views: no invariance, variance or covariance penalty left
    z = torch.linalg.qr(torch.randn(256, 8))[0] * (255**0.5)  # orthogonal columns
    z = z - z.mean(0)
    loss = VICRegLoss(eps=1e-12)(z, z)
    assert float(loss) < 0.2
    # collapsed views: the variance term is the full hinge, 25 * 1 * (1 - sqrt(eps))
    c = torch.ones(16, 8)
    torch.testing.assert_close(VICRegLoss()(c, c), torch.tensor(25 * (1 - 1e-2)))


def test_byol_analytic_cases() -> None:
    p = torch.randn(10, 6)
    torch.testing.assert_close(byol_loss(p, 2 * p), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(BYOLLoss()(p, -p), torch.tensor(4.0))
    e = torch.eye(2)
    torch.testing.assert_close(byol_loss(e[:1], e[1:]), torch.tensor(2.0))


def test_feature_term_is_zero_for_orthonormal_identical_columns() -> None:
    z = torch.linalg.qr(torch.randn(32, 8))[0]  # (32, 8) orthonormal columns
    loss = feature_redundancy_loss((z, z), (z, z))
    assert float(loss) < 1e-3


@pytest.mark.parametrize(
    "fn",
    [
        BarlowTwinsLoss(),
        VICRegLoss(),
        BYOLLoss(),
        lambda a, b: feature_redundancy_loss((b, a), (a, b)),
    ],
)
def test_gradients_flow(fn) -> None:
    z0, z1 = (t.clone().requires_grad_() for t in views())
    fn(z0, z1).backward()
    assert z0.grad is not None and torch.isfinite(z0.grad).all() and z0.grad.abs().sum() > 0


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="lambda_offdiag=-1"):
        BarlowTwinsLoss(lambda_offdiag=-1)
    with pytest.raises(ValueError, match="scale_loss=0"):
        BarlowTwinsLoss(scale_loss=0)
    with pytest.raises(ValueError, match="var_weight=-1"):
        VICRegLoss(var_weight=-1)
    with pytest.raises(ValueError, match="B >= 2"):
        BarlowTwinsLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="equal shape"):
        VICRegLoss()(torch.randn(4, 4), torch.randn(4, 5))
    with pytest.raises(ValueError, match="equal shape"):
        byol_loss(torch.randn(4, 4), torch.randn(3, 4))


# --------------------------------------------------------------- two gloo processes
WORLD, B = 2, 12
LOSSES = {
    "barlow": BarlowTwinsLoss(),
    "vicreg": VICRegLoss(),
    "feature": lambda a, b: feature_redundancy_loss((b.detach(), a.detach()), (a, b)),
}


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        z0, z1 = views(B, seed=3)
        sl = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        for name, fn in LOSSES.items():
            a, c = z0[sl].clone().requires_grad_(), z1[sl].clone().requires_grad_()
            loss = fn(a, c)
            loss.backward()
            out[(name, rank)] = (float(loss.detach()), a.grad / WORLD, c.grad / WORLD)  # DDP: mean
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_processes() -> dict:
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    return {k: out[k] for k in out}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_two_processes_use_the_global_batch(name: str, two_processes: dict) -> None:
    """B/2 samples on each of 2 processes: the loss and gradients of B on one process."""
    z0, z1 = (t.clone().requires_grad_() for t in views(B, seed=3))
    loss = LOSSES[name](z0, z1)
    loss.backward()
    out = [two_processes[(name, r)] for r in range(WORLD)]
    assert sum(o[0] for o in out) / WORLD == pytest.approx(float(loss.detach()), rel=1e-5)
    torch.testing.assert_close(torch.cat([o[1] for o in out]), z0.grad)
    torch.testing.assert_close(torch.cat([o[2] for o in out]), z1.grad)


@pytest.mark.parametrize("name", ["barlow", "vicreg", "feature"])
def test_float32_under_autocast(name: str) -> None:
    """bf16 embeddings under autocast: the statistics are still computed in float32."""
    z0, z1 = (t.bfloat16() for t in views(64, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LOSSES[name](z0, z1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, LOSSES[name](z0.float(), z1.float()))
