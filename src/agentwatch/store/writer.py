"""Group commit: one writer thread, many requests per transaction.

Request handlers decode and normalize, then :meth:`Writer.submit` a
:class:`WriteBatch` and await the future it returns. The writer thread takes
every batch waiting in its queue, writes them in one transaction (spans, the
sessions they touch, the event-time clock) and resolves each future only
after the commit: a 200 is never answered for data that is not durable.
A span's columns go to ``spans`` and its payload (attributes, events,
links) to ``span_payloads``, in the same transaction.

Session ids: a span's own id wins; a span without one inherits it from an
ancestor in the same batch, else takes the session its trace was filed under
(``trace_sessions``). A trace seen with no session id at all stands in as its
own session until a span of it names one; then its spans and summary move.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from sqlalchemy import Connection, and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from agentwatch._types import RawLogRecord, Resource
from agentwatch.sessions.summary import SPAN_COLUMNS, Summary, summarize
from agentwatch.store import models as m
from agentwatch.store.engine import log_failed_pass, run_retrying
from agentwatch.store.models import utcnow
from agentwatch.store.statements import Statements

logger = logging.getLogger(__name__)

#: Spans dated further than this past the wall clock do not move the watermark.
MAX_FUTURE_SKEW_NS = 3600 * 10**9
_CHUNK = 500
_CHUNK_ROWS = 200


class WriteRejected(Exception):
    """The store refused the data of one batch (not retryable)."""


class WriterUnavailable(Exception):
    """The store could not be written just now (retryable)."""


@dataclass
class WriteBatch:
    """What one request hands the writer."""

    project_id: int
    #: Span rows (``spans`` columns but ``project_id``/``session_id``/``session_explicit``)
    #: plus the key ``_session`` holding the span's own session id or None.
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[RawLogRecord] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    future: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)


@dataclass
class _Control:
    action: Callable[[], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass
class Clock:
    """One project's event-time clock."""

    max_event_ns: int = 0
    watermark_ns: int = 0
    last_arrival: float = field(default_factory=time.monotonic)
    #: The watermark of the last completion pass that committed: every session that ended ``idle_timeout``
    #: before it is complete and queued for evaluation. ``watermark_ns`` runs ahead of it between two passes.
    completed_ns: int = 0


class Writer:
    """The single writer of spans, sessions and the event-time clock."""

    def __init__(
        self,
        engine: Any,
        *,
        idle_timeout_s: float,
        allowed_lateness_s: float,
        max_batch_spans: int = 20000,
        on_complete: Callable[[Connection, int, list[str]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.idle_ns = int(idle_timeout_s * 1e9)
        self.lateness_ns = int(allowed_lateness_s * 1e9)
        self.max_batch_spans = max_batch_spans
        self.on_complete = on_complete
        self._queue: queue.SimpleQueue[WriteBatch | _Control | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._known_resources: set[str] = set()
        self._trace_cache: OrderedDict[tuple[int, str], str] = OrderedDict()
        self.clocks: dict[int, Clock] = {}
        self._last_completion = 0.0
        self.commits = 0
        self._sql = Statements(self.dialect)
        self._session_upsert = self._build_session_upsert()
        self._load_clocks()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentwatch-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, batch: WriteBatch) -> concurrent.futures.Future[int]:
        """Queue a batch; the future resolves to its span count once committed."""
        self._queue.put(batch)
        return batch.future

    def call(self, action: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``action`` on the writer thread after everything queued before it."""
        control = _Control(action)
        self._queue.put(control)
        return control.future

    # -- the loop --------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Control):
                self._run_control(item)
                continue
            batches = [item]
            count = len(item.spans) + len(item.logs)
            control: _Control | None = None
            stop = False
            while count < self.max_batch_spans:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if isinstance(nxt, _Control):
                    control = nxt
                    break
                batches.append(nxt)
                count += len(nxt.spans) + len(nxt.logs)
            self._commit_batches(batches)
            try:
                self._maybe_complete(force=False)
            except Exception as exc:  # noqa: BLE001 - the writer outlives a failed completion pass
                log_failed_pass(logger, exc, "completing sessions")
            if control is not None:
                self._run_control(control)
            if stop:
                return

    def _run_control(self, control: _Control) -> None:
        try:
            _resolve(control.future, control.action())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            _reject(control.future, exc)

    def _commit_batches(self, batches: list[WriteBatch]) -> None:
        try:
            run_retrying(lambda: self._write(batches), f"a write of {len(batches)} batches", log=logger,
                         before_retry=self._forget)
        except Exception as exc:  # noqa: BLE001
            self._forget()
            if len(batches) == 1:
                self._fail(batches[0], exc)
                return
            # Isolate the batch that failed; the others still commit.
            for batch in batches:
                try:
                    self._write([batch])
                except Exception as single_exc:  # noqa: BLE001
                    self._forget()
                    self._fail(batch, single_exc)
                    continue
                _resolve(batch.future, len(batch.spans))
            return
        for batch in batches:
            _resolve(batch.future, len(batch.spans))

    def _forget(self) -> None:
        """Drop what a rolled-back transaction may have taught the caches."""
        self._trace_cache.clear()
        self._known_resources.clear()

    def _fail(self, batch: WriteBatch, exc: Exception) -> None:
        if isinstance(exc, OperationalError):
            logger.warning("store unavailable: %s", exc.orig if hasattr(exc, "orig") else exc)
            _reject(batch.future, WriterUnavailable(str(getattr(exc, "orig", exc))))
        elif isinstance(exc, DBAPIError):
            logger.warning("store refused a batch: %s", exc.orig)
            _reject(batch.future, WriteRejected(f"the store refused the data: {exc.orig}"))
        else:
            logger.exception("writing a batch failed")
            _reject(batch.future, WriteRejected(f"the data could not be stored: {exc}"))

    # -- one transaction -------------------------------------------------

    def _write(self, batches: list[WriteBatch]) -> None:
        by_project: dict[int, list[WriteBatch]] = {}
        for batch in batches:
            by_project.setdefault(batch.project_id, []).append(batch)
        latest: dict[int, int] = {}
        with self.engine.begin() as conn:
            self._write_resources(conn, [r for b in batches for r in b.resources])
            for project_id, group in by_project.items():
                rows = [row for b in group for row in b.spans]
                logs = [rec for b in group for rec in b.logs]
                if rows:
                    self._write_spans(conn, project_id, rows)
                    latest[project_id] = max(r["end_ns"] for r in rows)
                if logs:
                    self._write_logs(conn, project_id, logs)
        self.commits += 1
        # The clock moves only on committed data; it is saved with the next completion pass.
        for project_id, end_ns in latest.items():
            self._advance(project_id, end_ns)

    def _write_resources(self, conn: Connection, resources: list[Resource]) -> None:
        new = {r.key: r for r in resources if r.key not in self._known_resources}
        if not new:
            return
        stmt = self._insert(m.resources).on_conflict_do_nothing(index_elements=["key"])
        conn.execute(stmt, [{"key": k, "attributes": r.attributes} for k, r in new.items()])
        self._known_resources.update(new)

    def _write_logs(self, conn: Connection, project_id: int, logs: list[RawLogRecord]) -> None:
        conn.execute(
            m.span_events.insert(),
            [
                {
                    "project_id": project_id,
                    "trace_id": rec.trace_id,
                    "span_id": rec.span_id,
                    "event_name": rec.event_name or "",
                    "time_ns": rec.time_ns,
                    "severity_number": rec.severity_number,
                    "attributes": rec.attributes,
                    "body": rec.body,
                    "scope_name": rec.scope_name,
                    "resource_key": rec.resource.key,
                }
                for rec in logs
            ],
        )

    def _write_spans(self, conn: Connection, project_id: int, rows: list[dict[str, Any]]) -> None:
        # Last copy of a span wins within the batch.
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            unique[(row["trace_id"], row["span_id"])] = row
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for row in unique.values():
            by_trace.setdefault(row["trace_id"], []).append(row)

        filed, new_traces = self._file_traces(conn, project_id, by_trace)
        recompute: set[str] = set()
        moves: list[tuple[str, str]] = []
        for trace_id, trace_rows in by_trace.items():
            if trace_id in new_traces:
                trace_session = new_traces[trace_id]
            else:
                previous_session, explicit = filed[trace_id]
                own = next((r["_session"] for r in trace_rows if r["_session"]), None)
                if own is not None and not explicit:
                    trace_session = own
                    moves.append((trace_id, own))
                    self._remember(project_id, trace_id, own)
                else:
                    trace_session = previous_session
            _assign_sessions(trace_rows, trace_session)

        for trace_id, session_id in moves:
            conn.execute(
                update(m.spans)
                .where(m.spans.c.project_id == project_id, m.spans.c.trace_id == trace_id,
                       m.spans.c.session_explicit.is_(False))
                .values(session_id=session_id)
            )
            conn.execute(
                update(m.trace_sessions)
                .where(m.trace_sessions.c.project_id == project_id, m.trace_sessions.c.trace_id == trace_id)
                .values(session_id=session_id, explicit=True)
            )
            recompute.update((trace_id, session_id))

        known_traces = [t for t in by_trace if t in filed]
        replaced = self._existing_spans(conn, project_id, known_traces, unique) if known_traces else {}
        for key, old_session in replaced.items():
            recompute.add(old_session)
            recompute.add(unique[key]["session_id"])

        span_rows = [
            (project_id, r["trace_id"], r["span_id"], r["parent_span_id"], r["session_id"], r["session_explicit"],
             r["name"], r["kind"], r["span_kind"], r["start_ns"], r["end_ns"], r["status_code"], r["status_message"],
             r["success"], r["error_type"], r["service"], r["agent_name"], r["agent_version"], r["intent"],
             r["user_id"], r["provider"], r["model"], r["tool_name"], r["tokens_in"], r["tokens_out"],
             r["cost_usd"], r["scope_name"], r["scope_version"], r["resource_key"])
            for r in unique.values()
        ]
        payload_rows = [(project_id, r["trace_id"], r["span_id"], r["attributes"], r["events"], r["links"])
                        for r in unique.values()]
        sql = self._sql
        if replaced:
            conn.exec_driver_sql(sql.spans_upsert, span_rows)
            conn.exec_driver_sql(sql.payloads_upsert, payload_rows)
        elif self.dialect == "postgresql":
            # Every row is new (no span of these traces was stored): COPY, PostgreSQL's bulk path.
            _copy(conn, sql.spans_copy, span_rows)
            _copy(conn, sql.payloads_copy, payload_rows)
        else:
            conn.exec_driver_sql(sql.spans_insert, span_rows)
            conn.exec_driver_sql(sql.payloads_insert, payload_rows)

        deltas: dict[str, list[dict[str, Any]]] = {}
        for key, row in unique.items():
            if row["session_id"] in recompute or key in replaced:
                continue
            deltas.setdefault(row["session_id"], []).append(row)
        self._merge_sessions(conn, project_id, {sid: summarize(rs) for sid, rs in deltas.items()})
        for session_id in recompute:
            self._recompute_session(conn, project_id, session_id)

    def _file_traces(
        self, conn: Connection, project_id: int, by_trace: dict[str, list[dict[str, Any]]]
    ) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
        """Answers ``(filed, new)``: the traces known before (session, explicit) and those filed now."""
        filed: dict[str, tuple[str, bool]] = {}
        proposals: list[tuple[int, str, str, bool]] = []
        for trace_id, trace_rows in by_trace.items():
            cached = self._trace_cache.get((project_id, trace_id))
            if cached is not None:
                filed[trace_id] = (cached, True)
                continue
            own = next((r["_session"] for r in trace_rows if r["_session"]), None)
            proposals.append((project_id, trace_id, own or trace_id, own is not None))
        new: dict[str, str] = {}
        for i in range(0, len(proposals), _CHUNK_ROWS):
            chunk = proposals[i : i + _CHUNK_ROWS]
            sql = self._sql.trace_sessions_insert(len(chunk))
            params = tuple(value for row in chunk for value in row)
            inserted = {row[0] for row in conn.exec_driver_sql(sql, params)}
            for _, trace_id, session_id, explicit in chunk:
                if trace_id in inserted:
                    new[trace_id] = session_id
                    if explicit:
                        self._remember(project_id, trace_id, session_id)
        conflicts = [p[1] for p in proposals if p[1] not in new]
        t = m.trace_sessions.c
        for chunk_ids in _chunks(conflicts):
            result = conn.execute(
                select(t.trace_id, t.session_id, t.explicit).where(t.project_id == project_id,
                                                                   t.trace_id.in_(chunk_ids))
            )
            for trace_id, session_id, explicit in result:
                filed[trace_id] = (session_id, bool(explicit))
                if explicit:
                    self._remember(project_id, trace_id, session_id)
        return filed, new

    def _remember(self, project_id: int, trace_id: str, session_id: str) -> None:
        cache = self._trace_cache
        cache[(project_id, trace_id)] = session_id
        if len(cache) > 200_000:
            cache.popitem(last=False)

    def _existing_spans(
        self, conn: Connection, project_id: int, trace_ids: list[str], unique: dict[tuple[str, str], Any]
    ) -> dict[tuple[str, str], str]:
        s = m.spans.c
        existing: dict[tuple[str, str], str] = {}
        for chunk in _chunks(trace_ids):
            result = conn.execute(
                select(s.trace_id, s.span_id, s.session_id).where(s.project_id == project_id, s.trace_id.in_(chunk))
            )
            for trace_id, span_id, session_id in result:
                if (trace_id, span_id) in unique:
                    existing[(trace_id, span_id)] = session_id
        return existing

    def _merge_sessions(self, conn: Connection, project_id: int, deltas: dict[str, Summary | None]) -> None:
        now = utcnow()
        rows = []
        # In key order, like the evaluation worker's marks (evaluations.mark_many): no lock-order deadlock.
        for session_id, summary in sorted(deltas.items(), key=lambda item: item[0]):
            if summary is None:
                continue
            row = summary.as_row()
            row.update(project_id=project_id, session_id=session_id, complete=False, completed_at=None,
                       flagged=False, sampled=False, created_at=now, updated_at=now)
            rows.append(row)
        if not rows:
            return
        conn.execute(self._session_upsert, rows)

    def _build_session_upsert(self) -> Any:
        stmt = self._insert(m.sessions)
        ex = stmt.excluded
        c = m.sessions.c
        least, greatest = (func.least, func.greatest) if self.dialect == "postgresql" else (func.min, func.max)
        added = ("spans", "turns", "llm_calls", "tool_calls", "tool_errors", "errors", "tokens_in", "tokens_out",
                 "agent_tokens_in", "agent_tokens_out", "usage_spans", "cost_usd", "work_ms")
        first = ("service", "agent_name", "agent_version", "intent", "user_id")
        set_: dict[str, Any] = {name: c[name] + ex[name] for name in added}
        set_.update({name: func.coalesce(c[name], ex[name]) for name in first})
        set_["start_ns"] = least(c.start_ns, ex.start_ns)
        set_["end_ns"] = greatest(c.end_ns, ex.end_ns)
        set_["updated_at"] = ex.updated_at
        return stmt.on_conflict_do_update(index_elements=["project_id", "session_id"], set_=set_)

    def _recompute_session(self, conn: Connection, project_id: int, session_id: str) -> None:
        s = m.spans.c
        result = conn.execute(
            select(*(s[name] for name in SPAN_COLUMNS)).where(s.project_id == project_id, s.session_id == session_id)
        )
        summary = summarize(dict(r._mapping) for r in result)
        key = and_(m.sessions.c.project_id == project_id, m.sessions.c.session_id == session_id)
        if summary is None:
            conn.execute(delete(m.sessions).where(key))
            return
        values = summary.as_row()
        values["updated_at"] = utcnow()
        updated = conn.execute(update(m.sessions).where(key).values(**values)).rowcount
        if not updated:
            self._merge_sessions(conn, project_id, {session_id: summary})

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- event time --------------------------------------------------------

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

    def _save_clock(self, conn: Connection, project_id: int, clock: Clock) -> None:
        stmt = self._insert(m.watermarks)
        stmt = stmt.on_conflict_do_update(
            index_elements=["project_id"],
            set_={"max_event_ns": stmt.excluded.max_event_ns, "watermark_ns": stmt.excluded.watermark_ns,
                  "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(stmt, {"project_id": project_id, "max_event_ns": clock.max_event_ns,
                            "watermark_ns": clock.watermark_ns, "updated_at": utcnow()})

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
        if not force and now - self._last_completion < 0.5:
            return
        self._last_completion = now
        passed: list[tuple[Clock, int]] = []
        with self.engine.begin() as conn:
            for project_id, clock in self.clocks.items():
                if clock.watermark_ns:
                    self._complete(conn, project_id, clock.watermark_ns - self.idle_ns)
                    self._save_clock(conn, project_id, clock)
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
                clock.watermark_ns = max(clock.watermark_ns, clock.max_event_ns + self.idle_ns + self.lateness_ns + 1)
                completed += len(self._complete(conn, pid, None))
                self._save_clock(conn, pid, clock)
                passed.append(clock)
        for clock in passed:
            clock.completed_ns = max(clock.completed_ns, clock.watermark_ns)
        return {"completed_sessions": completed}


def _resolve(future: concurrent.futures.Future[Any], result: Any) -> None:
    """Answer a waiting caller; one that gave up (cancelled) needs no answer."""
    try:
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _reject(future: concurrent.futures.Future[Any], exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass


def _assign_sessions(trace_rows: list[dict[str, Any]], trace_session: str) -> None:
    """Own id, else the nearest ancestor's in this batch, else the trace's."""
    by_span = {r["span_id"]: r for r in trace_rows}
    for row in trace_rows:
        if row["_session"]:
            row["session_id"] = row["_session"]
            row["session_explicit"] = True
            continue
        session = None
        parent = row["parent_span_id"]
        seen = 0
        while parent is not None and parent in by_span and seen < 256:
            ancestor = by_span[parent]
            if ancestor["_session"]:
                session = ancestor["_session"]
                break
            parent = ancestor["parent_span_id"]
            seen += 1
        row["session_id"] = session or trace_session
        row["session_explicit"] = False


def _copy(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """``COPY ... FROM STDIN`` of ``rows`` in the connection's transaction (psycopg 3)."""
    driver: Any = conn.connection.dbapi_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _chunks(items: list[str], size: int = _CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
