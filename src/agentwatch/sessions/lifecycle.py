"""A session's life: its spans arrive, event time passes it by, it completes once.

:class:`SessionLifecycle` is what the group-commit writer
(:class:`~agentwatch.store.writer.Writer`) runs in each transaction: it gives
every span its session (:mod:`agentwatch.sessions.assign`), stores the spans
and merges each session's summary (:mod:`agentwatch.sessions.rows`). After the
commit it moves the project's event-time clock; every half second a completion
pass marks complete the sessions that ended ``idle_timeout`` before the
watermark and hands them to ``on_complete`` in the same transaction (which
queues their evaluation and counts them in rollups).

The watermark is the latest event time seen minus ``allowed_lateness``; spans
dated far past the wall clock do not move it. In live mode a project quiet for
``idle_timeout`` of wall time moves on by the wall time passed (:meth:`tick`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import DBAPIError

from agentwatch.sessions.assign import Assigner
from agentwatch.sessions.rows import SessionRows
from agentwatch.sessions.summary import summarize
from agentwatch.store import models as m
from agentwatch.store.engine import insert_on_conflict, log_failed_pass
from agentwatch.store.models import utcnow
from agentwatch.store.spans import SpanRows
from agentwatch.store.writer import WriteBatch

logger = logging.getLogger(__name__)

#: Spans dated further than this past the wall clock do not move the watermark.
MAX_FUTURE_SKEW_NS = 3600 * 10**9
#: Completion passes after writes are at least this far apart (wall time).
COMPLETION_INTERVAL_S = 0.5

OnComplete = Callable[[Connection, int, list[str]], None]


@dataclass
class Clock:
    """One project's event-time clock."""

    max_event_ns: int = 0
    watermark_ns: int = 0
    last_arrival: float = field(default_factory=time.monotonic)
    #: The watermark of the last completion pass that committed: every session that ended ``idle_timeout``
    #: before it is complete and queued for evaluation. ``watermark_ns`` runs ahead of it between two passes.
    completed_ns: int = 0


class SessionLifecycle:
    """Sessions and the event-time clock of every project, written in the writer's transactions."""

    def __init__(self, engine: Any, *, idle_timeout_s: float, allowed_lateness_s: float,
                 on_complete: OnComplete | None = None) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        self.idle_ns = int(idle_timeout_s * 1e9)
        self.lateness_ns = int(allowed_lateness_s * 1e9)
        self.on_complete = on_complete
        self.clocks: dict[int, Clock] = {}
        self._spans = SpanRows(dialect)
        self._assigner = Assigner(dialect)
        self._sessions = SessionRows(dialect)
        self._last_completion = 0.0
        self._load_clocks()

    # -- in the writer's transaction ---------------------------------------

    def write(self, conn: Connection, batches: list[WriteBatch]) -> None:
        by_project: dict[int, list[WriteBatch]] = {}
        for batch in batches:
            by_project.setdefault(batch.project_id, []).append(batch)
        self._spans.write_resources(conn, [r for b in batches for r in b.resources])
        for project_id, group in by_project.items():
            rows = [row for b in group for row in b.spans]
            logs = [rec for b in group for rec in b.logs]
            if rows:
                self._write_spans(conn, project_id, rows)
            if logs:
                self._spans.write_logs(conn, project_id, logs)

    def committed(self, batches: list[WriteBatch]) -> None:
        """The clock moves only on committed data; it is saved with the next completion pass."""
        latest: dict[int, int] = {}
        for batch in batches:
            if batch.spans:
                end_ns = max(r["end_ns"] for r in batch.spans)
                latest[batch.project_id] = max(latest.get(batch.project_id, end_ns), end_ns)
        for project_id, end_ns in latest.items():
            self._advance(project_id, end_ns)

    def rolled_back(self) -> None:
        """Drop what a rolled-back transaction may have taught the caches."""
        self.forget()

    def forget(self) -> None:
        """Forget which session each trace was filed under, and which resources are stored."""
        self._assigner.forget()
        self._spans.forget()

    def after_commit(self) -> None:
        """On the writer thread after each group commit: a completion pass, at most every half second."""
        try:
            self._maybe_complete(force=False)
        except Exception as exc:  # noqa: BLE001 - the writer outlives a failed completion pass
            log_failed_pass(logger, exc, "completing sessions")

    def _write_spans(self, conn: Connection, project_id: int, rows: list[dict[str, Any]]) -> None:
        # Last copy of a span wins within the batch.
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            unique[(row["trace_id"], row["span_id"])] = row
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for row in unique.values():
            by_trace.setdefault(row["trace_id"], []).append(row)

        known, recompute = self._assigner.assign(conn, project_id, by_trace)
        known_traces = [t for t in by_trace if t in known]
        replaced = self._spans.existing(conn, project_id, known_traces, unique) if known_traces else {}
        for key, old_session in replaced.items():
            recompute.add(old_session)
            recompute.add(unique[key]["session_id"])
        self._spans.write_spans(conn, project_id, unique.values(), replacing=bool(replaced))

        deltas: dict[str, list[dict[str, Any]]] = {}
        for key, row in unique.items():
            if row["session_id"] in recompute or key in replaced:
                continue
            deltas.setdefault(row["session_id"], []).append(row)
        self._sessions.merge(conn, project_id, {sid: summarize(rs) for sid, rs in deltas.items()})
        for session_id in recompute:
            self._sessions.recompute(conn, project_id, session_id)

    # -- event time ----------------------------------------------------------

    def _load_clocks(self) -> None:
        try:
            with self.engine.connect() as conn:
                for row in conn.execute(select(m.watermarks)):
                    self.clocks[row.project_id] = Clock(row.max_event_ns, row.watermark_ns,
                                                        completed_ns=row.watermark_ns)
        except DBAPIError:
            logger.exception("reading the event-time clocks failed")

    def _advance(self, project_id: int, end_ns: int) -> Clock:
        clock = self.clocks.setdefault(project_id, Clock())
        clock.last_arrival = time.monotonic()
        if end_ns <= time.time_ns() + MAX_FUTURE_SKEW_NS and end_ns > clock.max_event_ns:
            clock.max_event_ns = end_ns
            clock.watermark_ns = max(clock.watermark_ns, end_ns - self.lateness_ns)
        return clock

    def _sync_clock(self, conn: Connection, project_id: int, clock: Clock) -> None:
        """Save the clock without ever moving the stored one back, and adopt the stored one.

        Ingest processes sharing a database so keep one clock per project: the furthest any of them
        has seen, as one process fed every span would. Newer events seen elsewhere count as an arrival
        here, so a process that gets none of a project's traffic never takes the project for quiet.
        """
        c = m.watermarks.c
        stmt = insert_on_conflict(self.engine.dialect.name, m.watermarks)
        greatest = func.greatest if self.engine.dialect.name == "postgresql" else func.max
        stmt = stmt.on_conflict_do_update(
            index_elements=["project_id"],
            set_={"max_event_ns": greatest(c.max_event_ns, stmt.excluded.max_event_ns),
                  "watermark_ns": greatest(c.watermark_ns, stmt.excluded.watermark_ns),
                  "updated_at": stmt.excluded.updated_at},
        ).returning(c.max_event_ns, c.watermark_ns)
        stored = conn.execute(stmt, {"project_id": project_id, "max_event_ns": clock.max_event_ns,
                                     "watermark_ns": clock.watermark_ns, "updated_at": utcnow()}).one()
        if stored.max_event_ns > clock.max_event_ns:
            clock.max_event_ns = int(stored.max_event_ns)
            clock.last_arrival = time.monotonic()
        clock.watermark_ns = max(clock.watermark_ns, int(stored.watermark_ns))

    # -- completion (on the writer thread) -----------------------------------

    def tick(self) -> None:
        """Live mode: a project quiet for ``idle_timeout`` of wall time moves on by the wall time passed."""
        now = time.monotonic()
        for clock in self.clocks.values():
            quiet = now - clock.last_arrival
            if quiet * 1e9 >= self.idle_ns and clock.max_event_ns:
                clock.watermark_ns = max(clock.watermark_ns, clock.max_event_ns - self.lateness_ns + int(quiet * 1e9))
        self._maybe_complete(force=True)

    def _maybe_complete(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_completion < COMPLETION_INTERVAL_S:
            return
        self._last_completion = now
        passed: list[tuple[Clock, int]] = []
        with self.engine.begin() as conn:
            for project_id, clock in self.clocks.items():
                if clock.watermark_ns:
                    self._sync_clock(conn, project_id, clock)
                    self._complete(conn, project_id, clock.watermark_ns - self.idle_ns)
                    passed.append((clock, clock.watermark_ns))
        for clock, watermark_ns in passed:  # committed: the monitor may check up to here
            clock.completed_ns = max(clock.completed_ns, watermark_ns)

    def _complete(self, conn: Connection, project_id: int, cut_ns: int | None) -> list[str]:
        c = m.sessions.c
        where = [c.project_id == project_id, c.complete.is_(False)]
        if cut_ns is not None:
            where.append(c.end_ns <= cut_ns)
        result = conn.execute(
            update(m.sessions).where(*where).values(complete=True, completed_at=utcnow()).returning(c.session_id)
        )
        done = [row[0] for row in result]
        if done and self.on_complete is not None:
            self.on_complete(conn, project_id, done)
        return done

    def flush(self, project_id: int | None = None) -> dict[str, int]:
        """On the writer thread: move the clock past its last event and complete every open session.

        ``project_id`` None flushes every project.
        """
        completed = 0
        passed: list[Clock] = []
        with self.engine.begin() as conn:
            if project_id is None:
                project_ids = {row[0] for row in conn.execute(select(m.sessions.c.project_id).distinct())}
                project_ids |= set(self.clocks)
            else:
                project_ids = {project_id}
            for pid in project_ids:
                clock = self.clocks.setdefault(pid, Clock())
                self._sync_clock(conn, pid, clock)
                clock.watermark_ns = max(clock.watermark_ns, clock.max_event_ns + self.idle_ns + self.lateness_ns + 1)
                completed += len(self._complete(conn, pid, None))
                self._sync_clock(conn, pid, clock)
                passed.append(clock)
        for clock in passed:
            clock.completed_ns = max(clock.completed_ns, clock.watermark_ns)
        return {"completed_sessions": completed}


#: The session columns rollups and the system SLOs count a completed session by.
COMPLETED_COLUMNS = ("service", "agent_version", "intent", "start_ns", "end_ns", "errors", "cost_usd", "work_ms")


def completed_rows(conn: Connection, project_id: int, session_ids: list[str],
                   chunk: int = 500) -> Iterator[list[dict[str, Any]]]:
    """The :data:`COMPLETED_COLUMNS` of ``session_ids``, a list per ``chunk`` of ids (for ``on_complete`` hooks)."""
    s = m.sessions.c
    for i in range(0, len(session_ids), chunk):
        ids = session_ids[i : i + chunk]
        yield [dict(r._mapping) for r in conn.execute(
            select(*(s[name] for name in COMPLETED_COLUMNS)).where(s.project_id == project_id, s.session_id.in_(ids)))]
