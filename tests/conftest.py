"""Suite-wide guards: every cache in a temporary folder, and no subprocess may hang.

``HEXSSL_CACHE`` points at a per-session temporary folder before any test runs, so no
test writes decoded datasets into the user's real ``~/.cache/hexssl`` (a test that wants
its own cache still sets the variable itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = os.environ.get("HEXSSL_CACHE")
    os.environ["HEXSSL_CACHE"] = str(tmp_path_factory.mktemp("hexssl-cache"))
    yield
    if old is None:
        os.environ.pop("HEXSSL_CACHE", None)
    else:
        os.environ["HEXSSL_CACHE"] = old
