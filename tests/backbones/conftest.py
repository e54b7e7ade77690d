"""Backbone tests run single-threaded.

These tensors are tiny, so intra-op threads only add OpenMP spin-waiting; on a shared
2-core machine that made the suite about 3x slower (36 s against 11 s).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
