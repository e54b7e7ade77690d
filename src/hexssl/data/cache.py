"""The decoded-dataset cache: one uint8 tensor file per (source, split, size, classes).

Files live under :func:`~hexssl.data.base.cache_dir`, keyed by the source's path, size
and mtime (or its entries' for a directory), the split, the image size and the class list.
A damaged or stale file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from hexssl.data.base import TensorImageDataset, cache_dir
from hexssl.data.scan import Entry

CACHE_VERSION = 3  # 3: classes without images are not counted


def cache_file(tag: str, key: object) -> Path:
    digest = hashlib.sha1(repr((CACHE_VERSION, key)).encode()).hexdigest()[:16]
    return cache_dir() / f"{tag}-{digest}.pt"


def source_key(root: Path, entries: Sequence[Entry] | None) -> object:
    """Cache key of a data source: paths, sizes and mtimes.

    An archive is keyed by its own stat; a directory by every listed file and hierarchy.csv.
    """
    if entries is None:
        st = root.stat()
        return (str(root.resolve()), st.st_size, st.st_mtime_ns)
    files = [e.name for e in entries] + [str(h) for h in [root / "hierarchy.csv"] if h.is_file()]
    stats = [(f, (st := os.stat(f)).st_size, st.st_mtime_ns) for f in files]
    return (str(root.resolve()), hashlib.sha1(repr(stats).encode()).hexdigest())


def load_cached(path: Path) -> TensorImageDataset | None:
    """The dataset saved at ``path``, or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, weights_only=True)
        ds = TensorImageDataset(
            d["images"], d["labels"], d["superlabels"], d["class_names"], d["superclass_names"],
            int(d["num_skipped"]),
        )  # fmt: skip
    except Exception as err:  # a stale or truncated cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {path}: {err}", stacklevel=2)
        return None
    if ds.num_skipped:  # said once per load: here, or by stack_decoded when decoding
        warnings.warn(
            f"skipped {ds.num_skipped} unreadable image(s) (found when the decoded cache "
            f"{path.name} was built)",
            stacklevel=2,
        )
    return ds


def save_cached(path: Path, ds: TensorImageDataset) -> None:
    """Save atomically (tmp file then rename); failures only warn."""
    d = {
        "images": ds.images, "labels": ds.labels, "superlabels": ds.superlabels,
        "class_names": ds.class_names, "superclass_names": ds.superclass_names,
        "num_skipped": ds.num_skipped,
    }  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(d, tmp)
        os.replace(tmp, path)
        size = path.stat().st_size / 1e6
        print(
            f"[hexssl] cached the decoded images: {path} ({size:.0f} MB; HEXSSL_CACHE=DIR moves it)"
        )
    except OSError as err:
        warnings.warn(f"could not write dataset cache {path}: {err}", stacklevel=2)
