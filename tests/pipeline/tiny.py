"""Tiny run settings shared by the pipeline tests (seconds per run on CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TINY = [
    "backbone.kwargs.width=4",
    "data.batch_size=16",
    "data.image_size=16",
    "data.options={n_per_class: 8, n_super: 2, n_per_super: 2, image_size: 16}",
    "method.params.proj_hidden=32",
    "method.params.proj_out=16",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "eval.purity_batch_size=32",
    "eval.purity_every_n_steps=1",
    "hex.warmup_epochs=0",
    "optim.warmup_epochs=0",
]


def tiny(tmp: Path, name: str, *extra: str) -> list[str]:
    """Overrides for a tiny synthetic run written under ``tmp``."""
    return [*TINY, f"output_dir={tmp}", f"name={name}", *extra]


def write_tree(root: Path, classes: dict[str, str], n_train: int = 4, n_val: int = 2) -> Path:
    """ImageFolder tree of random 12 px PNGs plus hierarchy.csv (class -> superclass)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    rows = "".join(f"{c},{s},{c}\n" for c, s in classes.items())
    (root / "hierarchy.csv").write_text("class,superclass,name\n" + rows)
    return root
