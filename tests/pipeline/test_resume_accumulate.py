"""Resume stays exact under gradient accumulation (per-micro-batch augmentation seeds)."""

from __future__ import annotations

import pytest
import torch

from .test_resume import SETTINGS, final_state, run
from .tiny import tiny


@pytest.mark.slow  # three subprocess runs, ~40 s
def test_sigkill_then_resume_with_accumulation_matches_uninterrupted(tmp_path):
    # 32 images in batches of 8, two micro-batches per step: 2 steps per epoch
    settings = [*SETTINGS, "trainer.accumulate_grad_batches=2", "data.batch_size=8"]
    ref = tmp_path / "ref"
    assert run("train", ref, 0, tiny(tmp_path, "ref", *settings)) == 0
    cut = tmp_path / "cut"
    assert run("train", cut, 3, tiny(tmp_path, "cut", *settings)) == -9  # mid-epoch 2
    assert run("resume", cut, 0, []) == 0
    a, b = final_state(ref), final_state(cut)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)
