"""Which session each span belongs to.

A span's own id wins; a span without one inherits it from an ancestor in the
same batch, else takes the session its trace was filed under
(``trace_sessions``). A trace seen with no session id at all stands in as its
own session until a span of it names one; then its spans and summary move.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, select, update

from agentwatch.store import models as m
from agentwatch.store.spans import chunks
from agentwatch.store.statements import Statements

_CHUNK_ROWS = 200
#: Traces whose session is settled (named explicitly) kept in memory, oldest dropped first.
_CACHED_TRACES = 200_000


class Assigner:
    """Files traces under sessions and gives every span of a batch its ``session_id``."""

    def __init__(self, dialect: str) -> None:
        self._sql = Statements(dialect)
        self._trace_cache: OrderedDict[tuple[int, str], str] = OrderedDict()

    def forget(self) -> None:
        """Drop what a rolled-back transaction may have taught the cache."""
        self._trace_cache.clear()

    def assign(self, conn: Connection, project_id: int, by_trace: dict[str, list[dict[str, Any]]]
               ) -> tuple[set[str], set[str]]:
        """Set ``session_id``/``session_explicit`` on every row; move traces that now name their session.

        Answers ``(known, recompute)``: the traces filed before this batch, and the sessions whose
        summary must be computed again from their stored spans (those that spans moved into or out of).
        """
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
            assign_within_trace(trace_rows, trace_session)

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
        return set(filed), recompute

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
        for chunk_ids in chunks(conflicts):
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
        if len(cache) > _CACHED_TRACES:
            cache.popitem(last=False)


def assign_within_trace(trace_rows: list[dict[str, Any]], trace_session: str) -> None:
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
