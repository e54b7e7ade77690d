"""The fixed purity batch samples the whole evaluation split, not its sorted head."""

from __future__ import annotations

import torch

from hexssl.data.base import TensorImageDataset
from hexssl.eval.purity import fixed_batch


def test_fixed_batch_is_a_seeded_random_sample():
    labels = torch.arange(20).repeat_interleave(10)  # sorted by class, like ImageFolder
    images = torch.zeros(200, 3, 8, 8, dtype=torch.uint8)
    ds = TensorImageDataset(images, labels, labels // 4)
    imgs, lab, sup = fixed_batch(ds, 40, seed=3)
    assert imgs.shape == (40, 3, 8, 8) and lab.shape == sup.shape == (40,)
    assert len(set(lab.tolist())) > 10  # the first 40 items would hold only 4 classes
    assert torch.equal(fixed_batch(ds, 40, seed=3)[1], lab)
