"""The package's shape: imports flow one way, the root stays small, the library runs no git.

The import graph is read from the source with ``ast``: every ``import hexssl...`` and
``from hexssl... import`` anywhere in a module (at module level or inside a function) is
an edge, because a lazy import that only dodges a cycle still ties the two modules
together. Imports of optional third-party packages (timm, umap, wandb) are no edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hexssl"
MAX_LOOSE_MODULES = 8  # modules directly in src/hexssl besides __init__.py


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The hexssl modules one import statement names (a submodule where it is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the hexssl modules it imports (nearest enclosing module for a name)."""
    files = module_files()
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            for name in _imported(node, module, path.name == "__init__.py", known):
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name.startswith("hexssl") and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40 and graph["hexssl.losses"]  # the walk found the package
    found = cycles(graph)
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in found]
    assert not found, f"import cycles: {detail}"


def test_the_package_root_has_few_loose_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def test_nothing_under_src_starts_git() -> None:
    """The library never runs git for its user (STYLE: it does its job and nothing else)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value == "git":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, offenders


SIGNALLING_CALLS = {"kill", "killpg", "send_signal", "terminate", "pthread_kill"}


def test_no_library_or_benchmark_code_signals_a_process() -> None:
    """Nothing we ship signals a process it did not start: no kill call at all, in Python
    or shell, except the local study executor forwarding SIGTERM to its own job processes
    (campaign.py reads /proc to see whether a claim's process is alive; the test cluster's
    script stops its daemons with `scontrol shutdown` and `munged --stop`)."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(SRC.parent / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in SIGNALLING_CALLS:
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    # the one exception: the local study executor forwards a stop signal to the job
    # processes it started itself (Popen objects it holds), so that they save first
    forward = "local.py:{} .send_signal"
    local = PACKAGE / "study" / "executors" / "local.py"
    calls = [n.lineno for n in ast.walk(ast.parse(local.read_text()))
             if isinstance(n, ast.Attribute) and n.attr == "send_signal"]  # fmt: skip
    assert len(calls) == 1 and "slot.proc.send_signal(signal.SIGTERM)" in local.read_text()
    offenders.remove(forward.format(calls[0]))
    root = SRC.parent
    shell = [
        *(root / "benchmarks").rglob("*.sh"),
        *(root / "scripts").rglob("*.sh"),
        root / ".ci/run",
    ]
    for path in shell:
        words = {w for line in path.read_text().splitlines() for w in line.split("#")[0].split()}
        offenders += [f"{path.name}: {w}" for w in words & {"kill", "pkill", "killall"}]
    assert not offenders, offenders
