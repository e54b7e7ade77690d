"""Atomic file writes: a reader (or a crash) sees the old file or the complete new one.

Each writer goes to ``<path>.tmp``, flushes and fsyncs it, then renames it over ``path``
(``os.replace`` is atomic on POSIX and Windows). A ``.tmp`` left by a kill between the
two steps is harmless and is removed by :func:`remove_stale_tmp`.

Example:
    >>> atomic_write_text(Path("/tmp/x.json"), "{}")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

TMP_SUFFIX = ".tmp"


def _atomic_write(path: Path, binary: bool, write: Callable[[IO[Any]], Any]) -> None:
    """Call ``write(file)`` on ``<path>.tmp``, fsync, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` so that ``path`` is either the old file or the complete new one."""
    _atomic_write(Path(path), True, lambda f: torch.save(obj, f))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Bytes counterpart of :func:`atomic_torch_save` (e.g. a serialised safetensors file)."""
    _atomic_write(Path(path), True, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Text-file counterpart of :func:`atomic_torch_save` (UTF-8)."""
    _atomic_write(Path(path), False, lambda f: f.write(text))


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete ``*.tmp`` files that a killed writer left in ``folder``; return them."""
    stale = sorted(folder.glob(f"*{TMP_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
