"""The stages import in one direction: a session goes from bytes to alert without climbing back up.

Read from the source with :mod:`ast`, so an import inside a function counts as
much as one at the top of a module; imports under ``if TYPE_CHECKING:`` do not
count (they are for annotations only and never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "agentwatch"

#: The stages of the path from OTLP bytes to an alert, and the packages around it.
STAGES = ("normalize", "ingest", "sessions", "store", "sample", "evaluate", "monitor", "alert", "feedback", "traffic")
#: The outer layers: they may import any stage, no stage imports them.
OUTER = ("api", "ui", "cli")

#: (importing package, imported packages it must never reach).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "normalize": ("store", "sessions", "ingest", "evaluate", "monitor", "alert", "feedback", "pipeline"),
    "sample": ("store", "ingest", "evaluate", "monitor", "alert", "feedback", "pipeline"),
    "ingest": ("evaluate", "monitor", "alert", "feedback", "pipeline"),
    "store": ("ingest", "sessions", "evaluate", "monitor", "alert", "feedback", "pipeline"),
    "sessions": ("ingest", "evaluate", "monitor", "alert", "feedback", "pipeline"),
    "evaluate": ("monitor", "alert", "feedback", "ingest"),
    "alert": ("monitor", "ingest", "evaluate", "feedback", "pipeline"),
    "monitor": ("ingest", "feedback"),
}
for _stage in STAGES:
    FORBIDDEN[_stage] = (*FORBIDDEN.get(_stage, ()), *OUTER, "testing")

#: Modules (beyond the standard library) that mean I/O: normalize is pure.
IO_MODULES = ("sqlalchemy", "httpx", "socket", "urllib.request", "subprocess", "grpc", "psycopg", "sqlite3")


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, root: Path = SRC) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import that runs, at any depth."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child.lineno, alias.name
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    name = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    name = child.module or ""
                yield child.lineno, name
                for alias in child.names:  # ``from agentwatch import store`` reaches agentwatch.store
                    yield child.lineno, f"{name}.{alias.name}"
            yield from walk(child)

    yield from walk(ast.parse(path.read_text(), filename=str(path)))


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "agentwatch" else None


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_source_tree_is_where_the_test_looks() -> None:
    names = {_module_name(p) for p in _sources()}
    assert {"agentwatch.normalize", "agentwatch.store.writer", "agentwatch.alert.store"} <= names


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_a_stage_never_imports_the_stages_after_it_or_the_outer_layers(stage: str) -> None:
    found = []
    for path in sorted((SRC / stage).rglob("*.py")):
        for line, name in _imports(path):
            target = _package_of(name)
            if target in FORBIDDEN[stage]:
                found.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert not found, "\n".join(sorted(set(found)))


def test_only_tests_import_the_test_helpers() -> None:
    """``agentwatch.testing`` builds on the product, never the other way round (OTLP builders live in
    ``agentwatch.otlp``)."""
    found = [f"{path.relative_to(SRC.parent)}:{line} imports {name}"
             for path in _sources() if path.parent.name != "testing"
             for line, name in _imports(path) if _package_of(name) == "testing"]
    assert not found, "\n".join(sorted(set(found)))


def test_normalize_does_no_io() -> None:
    found = [f"{path.relative_to(SRC.parent)}:{line} imports {name}"
             for path in sorted((SRC / "normalize").rglob("*.py"))
             for line, name in _imports(path)
             if any(name == io or name.startswith(io + ".") for io in IO_MODULES)]
    calls = [f"{path.relative_to(SRC.parent)}:{node.lineno} calls open()"
             for path in sorted((SRC / "normalize").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"]
    assert not found + calls, "\n".join(found + calls)


def test_the_walk_sees_imports_in_functions_and_skips_type_checking_blocks(tmp_path: Path) -> None:
    root = tmp_path / "agentwatch"
    (root / "alert").mkdir(parents=True)
    sample = root / "alert" / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from agentwatch.api import app\n"
        "def f():\n"
        "    from ..monitor import checker\n"
    )
    names = [name for _, name in _imports(sample, root)]
    assert "agentwatch.monitor" in names and "agentwatch.monitor.checker" in names
    assert not any(name.startswith("agentwatch.api") for name in names)


def test_the_catalogue_builds_through_the_kind_registry_which_never_imports_it() -> None:
    """``evaluate.catalogue`` imports ``evaluate.build`` (the registry of kinds); not the other way round."""
    build = SRC / "evaluate" / "build.py"
    assert not [name for _, name in _imports(build) if name.startswith("agentwatch.evaluate.catalogue")]
    assert any(name == "agentwatch.evaluate.build" for _, name in _imports(SRC / "evaluate" / "catalogue.py"))
