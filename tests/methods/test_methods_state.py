"""Queues and momentum encoders are state: they survive a checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from hexssl.methods.common import FeatureQueue

from .helpers import build, first_batch, tiny_config, train_steps

STATEFUL = {
    "moco_v2": ["queues.0.queue", "queues.0.queue_ptr", "queues.1.queue", "momentum_backbone."],
    "moco_v3": ["momentum_backbone.", "momentum_projector."],
    "nnclr": ["support.queue", "support.queue_ptr"],
    "all4one": ["support.queue", "support.queue_ptr", "momentum_projector."],
    "byol": ["momentum_backbone.", "momentum_projector."],
}


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_survives_save_and_load(name: str) -> None:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name))
    images, _, superlabels, _ = first_batch(dm)
    train_steps(method, method.augment(images), superlabels, steps=2)  # move queues and EMA
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    state = method.state_dict()
    for prefix in STATEFUL[name]:
        assert any(k.startswith(prefix) for k in state), prefix
    torch.manual_seed(1)  # a fresh instance starts from other random queues and weights
    fresh, _ = build(tiny_config(name))
    keys = [k for k in state if any(k.startswith(p) for p in STATEFUL[name])]
    assert any(not torch.equal(fresh.state_dict()[k], state[k]) for k in keys)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    for k in keys:
        assert torch.equal(fresh.state_dict()[k], state[k]), k
    for online, tgt in fresh.momentum_pairs:  # the loaded EMA copies are still the updated ones
        assert all(not t.requires_grad for t in tgt.parameters())
        assert any(not torch.equal(o, t) for o, t in zip(online.parameters(), tgt.parameters()))


def test_queue_wraps_around() -> None:
    q = FeatureQueue(5, 2)
    rows = F.normalize(torch.randn(8, 2), dim=1)
    q.push(rows[:3])
    q.push(rows[3:6])  # positions 3, 4, 0
    assert int(q.queue_ptr) == 1
    torch.testing.assert_close(q.queue[[3, 4, 0, 1, 2]], rows[[3, 4, 5, 1, 2]])


def test_queue_keeps_the_newest_rows_of_a_large_batch() -> None:
    q = FeatureQueue(4, 3)
    q.push(torch.randn(2, 3))
    rows = F.normalize(torch.randn(6, 3), dim=1)
    q.push(rows)  # ptr 2 -> 8 % 4 = 0; the last 4 rows land at positions 0..3
    assert int(q.queue_ptr) == 0
    torch.testing.assert_close(q.queue, rows[2:])


def test_queue_nearest_and_normalisation() -> None:
    q = FeatureQueue(6, 4)
    rows = torch.randn(6, 4) * 5
    q.push(rows)
    torch.testing.assert_close(q.queue.norm(dim=1), torch.ones(6))
    near = q.nearest(rows[[2, 4]] * 3, k=2)  # (2, 2, 4), nearest first
    torch.testing.assert_close(near[:, 0], F.normalize(rows[[2, 4]], dim=1))
    assert not near.requires_grad


def test_queue_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="queue size=0"):
        FeatureQueue(0, 4)
