"""Suite-wide guards: every cache in a temporary folder, and no subprocess may hang.

``HEXSSL_CACHE`` points at a per-session temporary folder before any test runs, so no
test writes decoded datasets into the user's real ``~/.cache/hexssl`` (a test that wants
its own cache still sets the variable itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.slurm.cluster import require_cluster


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = os.environ.get("HEXSSL_CACHE")
    os.environ["HEXSSL_CACHE"] = str(tmp_path_factory.mktemp("hexssl-cache"))
    yield
    if old is None:
        os.environ.pop("HEXSSL_CACHE", None)
    else:
        os.environ["HEXSSL_CACHE"] = old


# Tests on tiny tensors run single-threaded: intra-op threads only add OpenMP spin-waiting,
# which on a shared 2-core machine made the backbone tests about 3x slower (36 s against
# 11 s). Whole folders, or one module with ``pytestmark = pytest.mark.single_thread``.
SINGLE_THREAD_DIRS = {"backbones", "methods", "study"}


@pytest.fixture(autouse=True)
def _single_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    folder = request.node.path.parent.name
    if folder not in SINGLE_THREAD_DIRS and not request.node.get_closest_marker("single_thread"):
        yield
        return
    import torch  # here, not at the top: the guards above must not wait for torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``slurm`` need a reachable cluster: skipped with the reason without one,
    failed under CI (``CI=true``), where ``.ci/run`` starts it (tests/slurm/cluster.py)."""
    if item.get_closest_marker("slurm") is None:
        return
    try:
        why = require_cluster(os.environ.get("CI", "").lower() == "true")
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    if why:
        pytest.skip(why)
