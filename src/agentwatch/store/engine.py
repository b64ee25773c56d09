"""Engines and migrations for the two supported databases.

SQLite runs in WAL mode with ``synchronous=NORMAL`` by default: a committed
transaction survives the server being killed (``FULL`` also survives a power
loss). PostgreSQL is reached through psycopg 3. Migrations are Alembic
revisions applied at start, one transaction each.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from agentwatch.errors import MigrationError, StoreError

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Pick the drivers we ship: ``postgresql://`` means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise StoreError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def insert_on_conflict(dialect: str, table: Any) -> Any:
    """``INSERT`` into ``table`` in the dialect's own form, which takes ``ON CONFLICT`` (PostgreSQL, SQLite)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def make_engine(url: str, *, sqlite_synchronous: str = "normal") -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if not database or database == ":memory:":
            raise StoreError("SQLite needs a file (WAL and group commit need one): sqlite:///path/to.db")
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision; answers that revision."""
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # One migrator at a time when several role processes start together.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7311001)")
            command.upgrade(_alembic_config(connection), "head")
            return current_revision(connection) or ""
    except Exception as exc:
        raise MigrationError(f"applying migrations failed: {exc}") from exc


def current_revision(connection: Any) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(None))
    return script.get_current_head() or ""


#: PostgreSQL's SQLSTATEs for a transaction it rolled back that can simply be tried again:
#: a serialization failure and a deadlock (one of two transactions taking the same rows in other orders).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
#: Tries of a transaction that keeps being rolled back as one of those.
WRITE_ATTEMPTS = 3


def retryable(exc: BaseException) -> bool:
    """True when ``exc`` is a database error whose transaction may be run again as it was."""
    return _sqlstate(exc) in RETRYABLE_SQLSTATES


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def run_retrying(transaction: Callable[[], T], what: str, *, log: logging.Logger,
                 before_retry: Callable[[], None] | None = None, pause_s: float = 0.02) -> T:
    """Run ``transaction`` (a whole transaction); again, up to :data:`WRITE_ATTEMPTS` times in all, while
    the database rolls it back as retryable. Each retry logs a warning naming ``what`` and the SQLSTATE;
    the last error, or any other, is raised."""
    for attempt in range(1, WRITE_ATTEMPTS):
        try:
            return transaction()
        except OperationalError as exc:
            if not retryable(exc):
                raise
            if before_retry is not None:
                before_retry()
            log.warning("%s was rolled back (%s); attempt %d of %d", what, _sqlstate(exc), attempt + 1,
                        WRITE_ATTEMPTS)
            time.sleep(pause_s * attempt)
    return transaction()


def log_failed_pass(log: logging.Logger, exc: BaseException, what: str) -> None:
    """Log a periodic pass that failed and that the next pass repeats: a warning when the database only
    rolled it back as retryable, else the error with its traceback."""
    if retryable(exc):
        log.warning("%s was rolled back (%s); the next pass retries", what, _sqlstate(exc))
    else:
        log.exception("%s failed; the next pass retries", what)
