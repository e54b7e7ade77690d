"""LARS, parameter groups and the step-based schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hexssl.optim import LARS, cosine_momentum, param_groups, warmup_cosine


def test_param_groups_exclude_bias_and_norm():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))
    regular, excluded = param_groups(model, 1e-4)
    assert [p.shape for p in regular["params"]] == [(3, 4), (2, 3)]
    assert len(excluded["params"]) == 3 and excluded["weight_decay"] == 0.0
    assert excluded["lars_exclude"] is True
    (only,) = param_groups(model, 1e-4, exclude_bias_norm=False)
    assert len(only["params"]) == 5


def test_lars_step_matches_the_formula():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([0.5])
    opt = LARS(
        [dict(params=[w], weight_decay=0.1), dict(params=[b], weight_decay=0.0, lars_exclude=True)],
        lr=0.5,
        eta=0.02,
    )
    opt.step()
    g = torch.tensor([[0.3, 2.4]])  # grad + wd * w
    trust = 0.02 * 5.0 / float(g.norm())
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * g)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.5 * 0.5]))  # plain SGD


def test_lars_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        LARS([nn.Parameter(torch.ones(1))], lr=0.0)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(5, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_cosine_momentum_rises_to_one():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
