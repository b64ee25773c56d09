"""One monitor at a time among processes sharing a PostgreSQL database: a session advisory lock.

Every process started with ``--role monitor`` is a candidate. The one that
takes the lock (``pg_try_advisory_lock``, on a connection it keeps open) runs
the monitor, the notification dispatcher and retention; the others try again
every second. PostgreSQL releases a session lock when its connection ends, so
when the holder dies (even by SIGKILL: the kernel closes its socket) a
candidate takes over at its next try.

>>> LOCK_KEY
3509345034677498042
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

logger = logging.getLogger(__name__)

#: The advisory lock's key: fixed, so every process of every version agrees on it ("agentwat" in ASCII).
LOCK_KEY = int.from_bytes(b"agentwat", "big") >> 1


class Leadership:
    """The monitor lock of one process: :meth:`hold` takes it if free and keeps it while the connection lives."""

    def __init__(self, engine: Any) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("monitor leadership needs PostgreSQL (one process runs the monitor on SQLite)")
        self.engine = engine
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def hold(self) -> bool:
        """Whether this process holds the lock now: checks a held lock's connection, or tries to take it."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return True
            except Exception:  # noqa: BLE001 - the connection is gone, and the lock with it
                logger.warning("lost the monitor lock: its database connection failed")
                self._drop()
        try:
            conn = self.engine.connect()
        except Exception:  # noqa: BLE001 - the database is down: try again later
            return False
        try:
            taken = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar()
            conn.commit()
        except Exception:  # noqa: BLE001
            conn.close()
            return False
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._conn.commit()
            except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                pass
            self._drop()

    def _drop(self) -> None:
        try:
            self._conn.invalidate()
        except Exception:  # noqa: BLE001
            pass
        self._conn = None
