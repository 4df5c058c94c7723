"""The package's layout contract: imports run one way, from the front ends down to the foundation.

    cli -> integrations.claude_code (the MCP server, hooks) -> report (render, status figures)
        -> api, integrations.cron, integrations.ollama_control -> run, routing, tasks, evals
        -> backends, checks, ledger -> errors, config, exits, yamlfile

report reads values from anything below it; only the front ends (cli, the MCP server) import it.

Every import counts, at module level and inside functions (the CLI defers its heavy imports into
functions, but they are still dependencies); only `if TYPE_CHECKING:` blocks are left out. Among
the subpackages there is no import cycle. See CONTRIBUTING.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ollama_dist"

LAYERS: dict[str, int] = {
    "__main__": 8,
    "cli": 7,
    "integrations.claude_code": 6,
    "report": 5,
    "api": 4, "integrations.cron": 4, "integrations.ollama_control": 4,
    "run": 3, "routing": 3, "tasks": 3, "evals": 3,
    "backends": 2, "checks": 2, "ledger": 2,
    "errors": 1, "config": 1, "exits": 1, "yamlfile": 1, "__init__": 1, "integrations": 1,
}


def unit(module: str) -> str:
    """`ollama_dist.run.dispatch` -> `run`; `ollama_dist.api` -> `api`; `ollama_dist` -> `__init__`;
    `ollama_dist.integrations.cron.lock` -> `integrations.cron` (each integration is a unit of its own)."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "integrations":
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(tree: ast.AST, module: str, is_package: bool, package: Path) -> set[str]:
    """Every ollama_dist module `tree` imports, anywhere but under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ollama_dist")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "ollama_dist":
                found.update(f"{base}.{a.name}" if _is_module(package, base, a.name) else base for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_module(package: Path, base: str, name: str) -> bool:
    """Whether `from base import name` names a module (else a value in base)."""
    folder = package.parent.joinpath(*base.split("."))
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def graph(package: Path) -> dict[str, set[str]]:
    """Unit -> the units it imports (itself left out)."""
    edges: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        src = unit(module)
        for target in imports_of(tree, module, path.name == "__init__.py", package):
            dst = unit(target)
            if dst != src:
                edges.setdefault(src, set()).add(dst)
        edges.setdefault(src, set())
    return edges


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Each import that runs against the direction, and each cycle among units."""
    found = []
    for src, targets in sorted(edges.items()):
        if src not in LAYERS:
            found.append(f"ollama_dist.{src} has no layer: add it to LAYERS (and CONTRIBUTING.md)")
            continue
        for dst in sorted(targets):
            if dst not in LAYERS:
                found.append(f"ollama_dist.{dst} has no layer: add it to LAYERS (and CONTRIBUTING.md)")
            elif LAYERS[dst] > LAYERS[src]:
                found.append(f"{src} imports {dst}, which sits above it")
    found.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(edges))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of units (Tarjan), as a path back to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return [[*g, g[0]] for g in groups]


def test_the_import_direction_holds_and_there_is_no_cycle() -> None:
    assert violations(graph(PACKAGE)) == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "ollama_dist"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


@pytest.mark.parametrize(("files", "expected"), [
    ({"ledger/store.py": "def f():\n    from ollama_dist.run import dispatch\n", "run/dispatch.py": ""},
     "ledger imports run, which sits above it"),
    ({"run/a.py": "from ollama_dist.routing import b\n", "routing/b.py": "import ollama_dist.run.a\n"},
     "import cycle: routing -> run -> routing"),
    ({"api.py": "from ollama_dist.report import render\n", "report/render.py": ""},
     "api imports report, which sits above it"),
    ({"errors.py": "from . import config\n", "config.py": "from .errors import X\n"},
     "import cycle: config -> errors -> config"),
    ({"newthing.py": ""}, "ollama_dist.newthing has no layer: add it to LAYERS (and CONTRIBUTING.md)"),
])
def test_a_planted_violation_is_found(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert expected in violations(graph(_plant(tmp_path, files)))


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"ledger/store.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                   "    from ollama_dist.run import dispatch\n",
                                "run/dispatch.py": ""})
    assert violations(graph(package)) == []


def misplaced_tests(tests: Path, package: Path) -> list[str]:
    """Test modules that sit outside the mirror of the package tree (tests/<stage>/test_*.py).

    Allowed: tests/<subpackage>/ for each subpackage of ollama_dist, tests/servers/ (the loopback
    doubles and their own tests) and tests/ itself (whole-product tests: layout, config, examples)."""
    stages = {p.name for p in package.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        parts = path.relative_to(tests).parts
        if len(parts) == 1 or parts[0] in stages | {"servers"}:
            continue
        found.append(f"{'/'.join(parts)}: put it under tests/<stage>/ for one of {sorted(stages)}")
    return found


def test_tests_mirror_the_package_tree() -> None:
    assert misplaced_tests(PACKAGE.parent / "tests", PACKAGE) == []


def test_a_misplaced_test_module_is_found(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"run/__init__.py": "", "run/dispatch.py": ""})
    tests = tmp_path / "tests"
    (tests / "run").mkdir(parents=True)
    (tests / "run" / "test_dispatch.py").write_text("", encoding="utf-8")
    (tests / "misc").mkdir()
    (tests / "misc" / "test_thing.py").write_text("", encoding="utf-8")
    assert misplaced_tests(tests, package) == [
        "misc/test_thing.py: put it under tests/<stage>/ for one of ['run']"]


MAX_LINES = 400


def oversized(folder: Path) -> list[str]:
    """Modules over MAX_LINES lines: each should be split by concern (one module, one reason to change)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(folder.parent)}: {lines} lines (split it under {MAX_LINES})")
    return found


def test_no_module_and_no_test_double_is_over_400_lines() -> None:
    assert oversized(PACKAGE) == []
    assert oversized(PACKAGE.parent / "tests" / "servers") == []


def test_an_oversized_module_is_found(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"run/dispatch.py": "x = 1\n" * (MAX_LINES + 1), "run/lanes.py": "x = 1\n"})
    assert oversized(package) == [f"ollama_dist/run/dispatch.py: {MAX_LINES + 1} lines (split it under 400)"]
