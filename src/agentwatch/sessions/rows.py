"""Session rows: each batch's summary delta merged into the stored row, or the whole summary again.

A batch of new spans adds its :func:`~agentwatch.sessions.summary.summarize`
delta with one upsert (counts add up, start takes the minimum, end the maximum,
the first known service, agent, intent and user stay). Where spans moved or
were replaced, the summary is computed again from the session's stored spans.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from agentwatch.sessions.summary import SPAN_COLUMNS, Summary, summarize
from agentwatch.store import models as m
from agentwatch.store.engine import insert_on_conflict
from agentwatch.store.models import utcnow

_ADDED = ("spans", "turns", "llm_calls", "tool_calls", "tool_errors", "errors", "tokens_in", "tokens_out",
          "agent_tokens_in", "agent_tokens_out", "usage_spans", "cost_usd", "work_ms")
_FIRST = ("service", "agent_name", "agent_version", "intent", "user_id")


class SessionRows:
    """Writes the ``sessions`` rows of one engine's dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._upsert = self._build_upsert()

    def merge(self, conn: Connection, project_id: int, deltas: dict[str, Summary | None]) -> None:
        """Add each session's delta to its row (a new session gets one)."""
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
        conn.execute(self._upsert, rows)

    def recompute(self, conn: Connection, project_id: int, session_id: str) -> None:
        """The session's summary again from its stored spans; a session left with none is deleted."""
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
            self.merge(conn, project_id, {session_id: summary})

    def _build_upsert(self) -> Any:
        stmt = insert_on_conflict(self.dialect, m.sessions)
        ex = stmt.excluded
        c = m.sessions.c
        least, greatest = (func.least, func.greatest) if self.dialect == "postgresql" else (func.min, func.max)
        set_: dict[str, Any] = {name: c[name] + ex[name] for name in _ADDED}
        set_.update({name: func.coalesce(c[name], ex[name]) for name in _FIRST})
        set_["start_ns"] = least(c.start_ns, ex.start_ns)
        set_["end_ns"] = greatest(c.end_ns, ex.end_ns)
        set_["updated_at"] = ex.updated_at
        return stmt.on_conflict_do_update(index_elements=["project_id", "session_id"], set_=set_)
