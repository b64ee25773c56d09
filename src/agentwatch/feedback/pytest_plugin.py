"""A pytest plugin: gate an agent on a dataset inside a test.

Installed with the package (entry point ``pytest11``)::

    def test_no_regressions(agentwatch_gate):
        result = agentwatch_gate("tests/support-regressions.jsonl", my_agent)
        assert result.passed, result.summary()

``agentwatch_gate(dataset, agent, **options)`` runs :func:`run_agent`;
``--agentwatch-junit PATH`` also writes each run's JUnit XML there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentwatch")
    group.addoption("--agentwatch-junit", default=None, metavar="PATH",
                    help="write the JUnit XML of every agentwatch gate run to PATH")


@pytest.fixture
def agentwatch_gate(request: pytest.FixtureRequest) -> Callable[..., Any]:
    from agentwatch.feedback.gate import load_dataset, run_agent

    junit = request.config.getoption("--agentwatch-junit")

    def gate(dataset: str, agent: Callable[..., Any], **options: Any) -> Any:
        result = run_agent(load_dataset(dataset), agent, **options)
        if junit:
            Path(junit).write_text(result.junit_xml(), encoding="utf-8")
        return result

    return gate
