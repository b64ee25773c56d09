"""The monitor's unit tests: one SQLite store per module, a project per test (every read is by project)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentwatch.store.store import Store


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Store]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    store = Store(f"sqlite:///{tmp_path_factory.mktemp(name) / 'monitor.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def db(shared: Store, request: pytest.FixtureRequest) -> tuple[Store, int]:
    """The module's database, with a project of the test's own (template ids are still global)."""
    return shared, shared.ensure_project(request.node.name)
