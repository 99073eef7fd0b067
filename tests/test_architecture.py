"""The harness's import graph: no circle between modules, and no arrow that docs/architecture.md forbids."""

from __future__ import annotations

import ast
import fnmatch
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / "harness").rglob("*.py"))}


def _under_type_checking(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skipped


def imports_of(source: str, known: set[str]) -> set[str]:
    """The harness modules `source` imports when it runs (at its top or inside functions)."""

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                return ".".join(parts[:end])
        return None

    tree = ast.parse(source)
    skipped = _under_type_checking(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(filter(None, (resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                resolved = resolve(f"{node.module}.{alias.name}") or resolve(node.module)
                if resolved:
                    found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path.read_text(), set(known)) - {name} for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, set())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def forbidden_arrows() -> list[tuple[list[str], list[str], list[str]]]:
    """The table under "Arrows the code may not draw": (from, may not import, except) patterns per row."""
    text = ARCHITECTURE.read_text().split("## Arrows the code may not draw", 1)[1]
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 3 or cells[0] in ("from", "---"):
            continue
        rows.append(tuple(re.findall(r"`([^`]+)`", cell) for cell in cells))
    return rows  # type: ignore[return-value]


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) or name == pattern.removesuffix(".*") for pattern in patterns)


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for sources, targets, allowed in forbidden_arrows():
        for module, imported in sorted(graph.items()):
            if not matches(module, sources) or matches(module, allowed):
                continue
            for target in sorted(imported):
                if matches(target, targets) and not matches(target, allowed):
                    found.append(f"{module} -> {target}")
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert circles(import_graph()) == []


def test_no_arrow_the_architecture_forbids() -> None:
    assert forbidden_arrows(), "docs/architecture.md lost its table of forbidden arrows"
    assert violations(import_graph()) == []


def test_the_checks_see_circles_and_forbidden_arrows() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = {"harness.report.html": {"harness.targets.docker"}, "harness.analysis.knee": {"harness.model"}}
    assert violations(graph) == ["harness.report.html -> harness.targets.docker"]
    # Imports inside functions count; those under TYPE_CHECKING never run.
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\ndef f():\n    import b\n"
    assert imports_of(source, {"a", "b"}) == {"b"}


def parts() -> dict[str, list[str]]:
    """The table under "The parts": part -> the modules and packages its Modules column names (paths under harness/)."""
    text = ARCHITECTURE.read_text().split("## The parts", 1)[1].split("\n## ", 1)[0]
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and cells[0] not in ("Part", "---"):
            found[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return found


def test_every_module_is_in_exactly_one_part_of_the_architecture() -> None:
    """A module belongs to the part that names it, else to the part that names its package; one part each."""
    named = parts()
    homes: dict[str, list[str]] = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        relative = path.relative_to(ROOT / "harness").as_posix()
        if relative.startswith("_data/"):
            continue
        explicit = [part for part, entries in named.items() if relative in entries]
        package = relative.rsplit("/", 1)[0] + "/" if "/" in relative else None
        homes[relative] = explicit or [part for part, entries in named.items() if package in entries]
    assert {module: found for module, found in homes.items() if len(found) != 1} == {}
    listed = {entry for entries in named.values() for entry in entries}
    assert {entry for entry in listed if not (ROOT / "harness" / entry).exists()} == set(), "a part names no module"


PACKAGES = ("analysis", "load", "metrics", "report", "targets")


@functools.cache
def public_surface(package: str) -> frozenset[str]:
    """The names a package's `__init__.py` lists in `__all__`: its public modules and objects."""
    tree = ast.parse((ROOT / "harness" / package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return frozenset(element.value for element in node.value.elts)  # type: ignore[attr-defined]
    return frozenset()


def reaches_into(importer: str, source: str) -> list[str]:
    """What `importer` takes from another package that the package does not list in `__all__`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            taken = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            taken = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in taken:
            parts = module.split(".")
            if parts[0] != "harness" or len(parts) < 2 or parts[1] not in PACKAGES:
                continue
            if importer == f"harness.{parts[1]}" or importer.startswith(f"harness.{parts[1]}."):
                continue
            member = parts[2] if len(parts) > 2 else name
            if member is not None and member not in public_surface(parts[1]):
                found.append(f"{importer} -> harness.{parts[1]}.{member}")
    return found


def test_other_parts_use_only_what_a_package_makes_public() -> None:
    assert all(public_surface(package) for package in PACKAGES)
    found = [line for name, path in modules().items() for line in reaches_into(name, path.read_text())]
    assert found == []
    assert reaches_into("harness.run", "from harness.analysis.knee import find_knee") == [
        "harness.run -> harness.analysis.knee"
    ]
