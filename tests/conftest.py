"""Shared fixtures: a fresh database on each engine, and real servers.

Every store test runs on SQLite (a file in a temporary folder) and on
PostgreSQL (a database created for the test and dropped after it). ``--db``
narrows the run to one engine. PostgreSQL is reached at
``AGENTWATCH_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
used only to create and drop databases).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agentwatch.testing import ServerProcess

PG_ADMIN_URL = os.environ.get("AGENTWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: ``shared/data`` beside the project's folder.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CAPTURES = DATA / "otlp-captures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=["all", "sqlite", "postgresql"], default="all",
                     help="run store tests on one engine only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``dialect``: a test per engine; ``engine``: the same, for module-scoped servers."""
    choice = metafunc.config.getoption("--db")
    dialects = ["sqlite", "postgresql"] if choice == "all" else [choice]
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize("dialect", dialects)
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", dialects, scope="module")


class PostgresDatabases:
    """Creates databases on the local server and drops them again."""

    def __init__(self) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def create(self) -> str:
        name = f"aw_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def url(self, name: str) -> str:
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases()
    yield dbs
    dbs.admin.dispose()


@pytest.fixture
def db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of an empty database of the ``dialect`` under test."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'agentwatch.db'}"
        return
    dbs: PostgresDatabases = request.getfixturevalue("pg_databases")
    name = dbs.create()
    try:
        yield dbs.url(name)
    finally:
        dbs.drop(name)


@pytest.fixture(scope="module")
def module_db(engine: str, tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """(database URL, folder) for a server shared by a whole module, on the ``engine`` under test."""
    folder = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-{engine}")
    if engine == "sqlite":
        yield f"sqlite:///{folder / 'agentwatch.db'}", folder
        return
    dbs: PostgresDatabases = request.getfixturevalue("pg_databases")
    name = dbs.create()
    try:
        yield dbs.url(name), folder
    finally:
        dbs.drop(name)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A running ``agentwatch serve`` on the database under test."""
    with ServerProcess(db_url, cwd=tmp_path) as proc:
        yield proc


@pytest.fixture
def shared_data() -> Path:
    if not DATA.exists():
        pytest.fail(f"the shared data is expected at {DATA}")
    return DATA


@pytest.fixture
def captures() -> Path:
    if not CAPTURES.exists():
        pytest.fail(f"the OTLP captures are expected at {CAPTURES}")
    return CAPTURES
