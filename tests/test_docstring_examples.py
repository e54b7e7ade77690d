"""Every ``>>>`` example in the package's docstrings runs and prints what it shows.

Examples that need real data, a GPU or the network carry ``# doctest: +SKIP``; all
others run here from the repository root (some read ``configs/`` and ``benchmarks/``).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import hexssl

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(hexssl.__path__, "hexssl."))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module)
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_hold(module_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _examples(module_name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


def test_the_package_has_runnable_examples() -> None:
    # Guards the walk itself: if module discovery broke, every test above would pass.
    counted = {name: sum(len(t.examples) for t in _examples(name)) for name in MODULES}
    assert len(MODULES) >= 40
    assert sum(counted.values()) >= 80
    for name in ("hexssl.eval.stats", "hexssl.eval.knn", "hexssl.losses.hex", "hexssl.study"):
        assert counted[name] > 0, name
