"""The fixed purity batch samples the whole evaluation split, not its sorted head."""

from __future__ import annotations

from hexssl.data.synthetic import make_synthetic
from hexssl.train import fixed_batch


def test_fixed_batch_is_a_seeded_random_sample():
    ds = make_synthetic("val", n_per_class=10, image_size=16)  # sorted by class
    assert len(set(ds.labels[:10].tolist())) == 1
    images, labels, supers = fixed_batch(ds, 40, seed=3)
    assert images.shape == (40, 3, 16, 16) and labels.shape == supers.shape == (40,)
    assert len(set(labels.tolist())) > 5
    again = fixed_batch(ds, 40, seed=3)
    assert bool((again[1] == labels).all())
