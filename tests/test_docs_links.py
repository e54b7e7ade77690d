"""Every relative link in the README and the docs resolves inside the repository.

The docs are README.md and the markdown files under docs/, src/ (the presets' guide)
and benchmarks/ (what each result measured).

A link is ``[text](target)``, ``![alt](target)`` or a reference definition
``[name]: target``, outside fenced code blocks and inline code. A relative target must
name an existing file or folder inside the repository (after following symlinks, and
without passing outside it on the way), and a ``#anchor`` into a markdown file must name
one of its headings, slugged as GitHub does. Links with a scheme (``https:``,
``mailto:``) are not followed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed."""
    out, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        out.append((number, CODE_SPAN.sub("", line)))
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link in a markdown text."""
    found = []
    for number, line in prose_lines(text):
        found += [(number, m.group(1)) for m in INLINE.finditer(line)]
        ref = REFERENCE.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a markdown file (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def link_problem(source: Path, target: str, root: Path) -> str | None:
    """Why ``target`` (a link in ``source``) is broken, or None when it resolves."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # a URL: not followed
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part)
    dest = source if not path_part else source.parent / path_part
    if not _inside(Path(os.path.normpath(dest)), root):  # '..' taken lexically
        return "leaves the repository"
    if not dest.exists():
        return "names nothing"
    if not _inside(dest.resolve(), root):
        return "leads outside the repository (a symlink)"
    markdown = anchor and dest.suffix == ".md" and dest.is_file()
    if markdown and unquote(anchor).lower() not in anchors(dest):
        return f"names no heading #{anchor} in {dest.name}"
    return None


def markdown_files(root: Path) -> list[Path]:
    """README.md and every markdown file under docs/, src/ and benchmarks/."""
    inside = [f for d in ("docs", "src", "benchmarks") for f in sorted((root / d).rglob("*.md"))]
    return [root / "README.md", *inside]


def broken_links(files: list[Path], root: Path) -> list[str]:
    """``file:line: target (problem)`` for every link that does not resolve."""
    out = []
    for f in files:
        for number, target in links(f.read_text(encoding="utf-8")):
            problem = link_problem(f, target, root)
            if problem:
                out.append(f"{f.relative_to(root)}:{number}: {target} ({problem})")
    return out


def test_every_relative_link_in_readme_and_docs_resolves_inside_the_repository() -> None:
    files = markdown_files(ROOT)
    assert {ROOT / "docs" / "hex.md", ROOT / "benchmarks" / "results" / "README.md"} <= set(files)
    assert sum(len(links(f.read_text(encoding="utf-8"))) for f in files) > 5  # links found
    assert broken_links(files, ROOT) == []


def test_the_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    (tmp_path / "repo" / "docs").mkdir(parents=True)
    root = (tmp_path / "repo").resolve()
    (tmp_path / "outside.md").write_text("# Out\n")
    (root / "docs" / "a.md").write_text("# Title\n\n## Two words, here\n\n## Title\n")
    (root / "escape").symlink_to(tmp_path / "outside.md")
    readme = root / "README.md"
    readme.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#two-words-here) [ok](docs/a.md#title-1)\n"
        "[ok](https://example.org/x) [self](#intro) `[code](missing.md)`\n"
        "# Intro\n"
        "```\n[fenced](missing.md)\n```\n"
        "[gone](docs/b.md) [up](../outside.md) [anchor](docs/a.md#nope)\n"
        "[link](escape) ![img](docs/missing.png)\n"
        "[ref]: ../../elsewhere.md\n"
    )
    found = broken_links([readme], root)
    assert found == [
        "README.md:7: docs/b.md (names nothing)",
        "README.md:7: ../outside.md (leaves the repository)",
        "README.md:7: docs/a.md#nope (names no heading #nope in a.md)",
        "README.md:8: escape (leads outside the repository (a symlink))",
        "README.md:8: docs/missing.png (names nothing)",
        "README.md:9: ../../elsewhere.md (leaves the repository)",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("5.1 Adaptive (default)", "51-adaptive-default"),
        ("The `reference` variant: what the authors' code computes",
         "the-reference-variant-what-the-authors-code-computes"),
        ("Multi-GPU and multi-node", "multi-gpu-and-multi-node"),
    ],
)  # fmt: skip
def test_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
