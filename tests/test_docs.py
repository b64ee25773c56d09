"""The reference pages follow the code: docs/cli.md is generated from the commands, docs/api.md lists
every route of the OpenAPI document, and every page README.md links to exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from agentwatch import __version__
from agentwatch.api.openapi import openapi_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_the_one_the_commands_generate() -> None:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == module.reference(), "docs/cli.md is stale: python scripts/cli_reference.py > docs/cli.md"
    assert "## `agentwatch demo`" in current and "`--scenario`" in current


def test_the_api_page_lists_every_route_of_the_openapi_document() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(GET|POST|DELETE|PUT|PATCH) ([^`]+)` \|", page, re.MULTILINE))
    routes = {(method.upper(), path) for path, operations in openapi_spec(__version__)["paths"].items()
              for method in operations}
    assert sorted(routes - documented) == []


def test_every_page_the_readme_links_to_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(((?:docs|examples|bench)/[^)#]*)\)", readme))
    assert {"docs/concepts.md", "docs/configuration.md", "docs/cli.md", "docs/api.md", "docs/postgresql.md",
            "examples/support-agent/agentwatch.yaml"} <= links
    assert [link for link in sorted(links) if not (ROOT / link).exists() and not link.startswith("docs/img/")] == []
