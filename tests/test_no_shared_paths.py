"""Nothing shipped refers to ../shared (issue 34): the package (src/, presets included),
pyproject.toml, README.md and the CLI's help work with only the package or the repository.

Tests and benchmarks may read ../shared/data, passing it explicitly; they are not shipped.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from hexssl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
# ../shared itself, its folders named without the dots, or a path built from its name
SHARED = re.compile(r"\.\./shared\b|\bshared/(data|docs)\b|/\s*[\"']shared[\"']")
# The one exception, until docs/hex.md replaces it (issue 34 item 2): the README's spec link.
ALLOWED: dict[Path, list[str]] = {}  # no exception: the spec link is docs/hex.md


def shipped_files() -> list[Path]:
    """Every file of src/ (not bytecode), pyproject.toml and README.md."""
    src = [
        p
        for p in sorted((ROOT / "src").rglob("*"))
        if p.is_file() and p.suffix != ".pyc" and not any(".egg-info" in q for q in p.parts)
    ]  # egg-info: pip's copy of an older README, rebuilt on install
    return [*src, ROOT / "pyproject.toml", ROOT / "README.md"]


def shared_lines(text: str, allowed: Sequence[str] = ()) -> list[str]:
    """The lines of ``text`` that refer to ../shared, after removing the allowed strings."""
    for ok in allowed:
        text = text.replace(ok, "")
    return [line.strip() for line in text.splitlines() if SHARED.search(line)]


def test_the_scanner_finds_each_form() -> None:
    bad = [
        "root: ../shared/data/x.tar.gz",
        'ROOT.parent / "shared" / "data"',
        "see shared/docs/HEX_SPEC.md",
    ]
    assert shared_lines("\n".join(bad)) == bad
    assert shared_lines("a shared exception; shared by all; the shared machinery") == []
    link = "[`HEX_SPEC`](../shared/docs/HEX_SPEC.md)"
    assert shared_lines(f"x {link} y", [link]) == []


def test_no_shipped_file_refers_to_shared() -> None:
    offenders = []
    for path in shipped_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        lines = shared_lines(text, ALLOWED.get(path, []))
        offenders += [f"{path.relative_to(ROOT)}: {line}" for line in lines]
    assert not offenders, offenders


def help_texts(parser: argparse.ArgumentParser) -> list[str]:
    """The help of ``parser`` and of every sub-command below it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += help_texts(sub)
    return texts


def test_the_cli_help_refers_to_no_shared_folder() -> None:
    texts = help_texts(build_parser())
    assert len(texts) > 10 and any("data get" in t for t in texts)
    assert not [line for t in texts for line in shared_lines(t)]
