"""Erasure of one user's data in one project, in one transaction, on either engine.

A user's sessions are those whose ``sessions.user_id`` is the user, plus any
session with a span whose ``user_id`` is the user. Of those sessions go: the
spans, the log records (``span_events``) of their spans and orphan records of
their traces, the ``trace_sessions`` rows, scores, queued evaluations
(``eval_jobs``) and the sessions themselves. Rollups hold only counts and sums
and stay as they are.

When the given user id is an e-mail address, its redaction mark (what ingest
redaction stores instead of the address) is matched too; see
:func:`email_mark`.

Tables added later (labels, alerts, clusters...) are handled by the
:data:`EXTRA_ERASERS` registry: each entry names a table and how to erase from
it, and runs only when that table exists in the database, inside the same
transaction. Register new tables there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    and_,
    cast,
    delete,
    inspect,
    or_,
    select,
    tuple_,
    update,
)

from agentwatch.normalize.redact import email_mark
from agentwatch.store import models as m

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CHUNK = 500
#: What erased text in a kept row (an alert, a cluster example) is replaced with.
ERASED = "[erased]"


def user_forms(user_id: str) -> list[str]:
    """Every form the user id may be stored under."""
    forms = [user_id]
    if _EMAIL.fullmatch(user_id.strip()):
        mark = email_mark(user_id.strip())
        if mark not in forms:
            forms.append(mark)
    return forms


@dataclass(frozen=True)
class Erasure:
    """What an extra-table eraser is given: the project, the user's forms and their sessions and traces."""

    project_id: int
    user_ids: list[str]
    session_ids: list[str]
    trace_ids: list[str]

    @property
    def needles(self) -> list[str]:
        """The strings that must not survive in kept rows."""
        return [*self.user_ids, *self.session_ids]


#: ``(table name, counted as, eraser)``: run when the table exists; the eraser answers rows removed.
Eraser = Callable[[Connection, Table, Erasure], int]


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def delete_rows_of_sessions(conn: Connection, table: Table, erasure: Erasure) -> int:
    """Delete the rows of the erased sessions (by ``session_id``, or ``user_id`` when no session column)."""
    cols = table.c
    where = [cols.project_id == erasure.project_id] if "project_id" in cols else []
    removed = 0
    if "session_id" in cols:
        for chunk in _chunks(erasure.session_ids):
            removed += conn.execute(delete(table).where(*where, cols.session_id.in_(chunk))).rowcount or 0
    if "user_id" in cols:
        removed += conn.execute(delete(table).where(*where, cols.user_id.in_(erasure.user_ids))).rowcount or 0
    return removed


def scrub_text(conn: Connection, table: Table, erasure: Erasure) -> int:
    """Keep the rows, replace the user's ids and session ids in every text and JSON column with ``[erased]``."""
    needles = [n for n in erasure.needles if n]
    if not needles:
        return 0
    text_cols = [c for c in table.c if isinstance(c.type, (String, JSON))]
    keys = list(table.primary_key.columns)
    if not text_cols or not keys:
        return 0
    where = [table.c.project_id == erasure.project_id] if "project_id" in table.c else []
    for chunk in _chunks(needles, 50):
        hits = or_(*(cast(c, Text).contains(n, autoescape=True) for c in text_cols for n in chunk))
        for row in conn.execute(select(*keys, *text_cols).where(*where, hits)).all():
            values = {}
            for col in text_cols:
                value = row._mapping[col.name]
                new = _scrub_value(value, needles)
                if new != value:
                    values[col.name] = new
            if values:
                conn.execute(update(table).where(and_(*(k == row._mapping[k.name] for k in keys))).values(values))
    return 0  # rows kept, not removed


def _scrub_value(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        for needle in needles:
            value = value.replace(needle, ERASED)
        return value
    if value is None or isinstance(value, (int, float, bool)):
        return value
    dumped = json.dumps(value)
    scrubbed = dumped
    for needle in needles:
        scrubbed = scrubbed.replace(json.dumps(needle)[1:-1], ERASED)
    return value if scrubbed == dumped else json.loads(scrubbed)


def delete_dataset_cases(conn: Connection, table: Table, erasure: Erasure) -> int:
    """Dataset cases made of the user's sessions go, with their membership rows.

    The versions that held them then no longer match their digests, and a read
    of one says so: erasure is the one change a dataset version admits.
    """
    cases = table.c
    members = Table("dataset_members", MetaData(), autoload_with=conn)
    owned = select(m.datasets.c.id).where(m.datasets.c.project_id == erasure.project_id)
    ids: list[int] = []
    for column, values in ((cases.source_session_id, erasure.session_ids), (cases.source_user_id, erasure.user_ids)):
        for chunk in _chunks(values, _CHUNK):
            ids += [int(i) for i in conn.execute(select(cases.id).where(cases.dataset_id.in_(owned),
                                                                          column.in_(chunk))).scalars()]
    removed = 0
    for chunk in _chunks(sorted(set(ids)), _CHUNK):
        conn.execute(delete(members).where(members.c.case_row_id.in_(chunk)))
        removed += conn.execute(delete(table).where(cases.id.in_(chunk))).rowcount or 0
    return removed


#: The extension point: tables that do not exist yet are skipped. ``counted as`` is the key of the
#: answer the removed rows add to (None: not counted).
EXTRA_ERASERS: list[tuple[str, str | None, Eraser]] = [
    ("labels", "labels", delete_rows_of_sessions),
    ("alerts", None, scrub_text),
    ("template_hits", None, delete_rows_of_sessions),
    ("dataset_cases", None, delete_dataset_cases),
]


def erase_user(engine: Engine, project_id: int, user_id: str) -> dict[str, int]:
    """Remove ``user_id``'s data from ``project_id``; answers ``{sessions, spans, scores, labels}`` removed."""
    removed = {"sessions": 0, "spans": 0, "scores": 0, "labels": 0}
    forms = user_forms(user_id)
    se, sp, ev, ts = m.sessions.c, m.spans.c, m.span_events.c, m.trace_sessions.c
    with engine.begin() as conn:
        session_ids = set(conn.execute(
            select(se.session_id).where(se.project_id == project_id, se.user_id.in_(forms))).scalars())
        session_ids.update(conn.execute(
            select(sp.session_id).where(sp.project_id == project_id, sp.user_id.in_(forms)).distinct()).scalars())
        ids = sorted(session_ids)
        trace_ids: set[str] = set()
        for chunk in _chunks(ids):
            trace_ids.update(conn.execute(select(sp.trace_id).where(
                sp.project_id == project_id, sp.session_id.in_(chunk)).distinct()).scalars())
            trace_ids.update(conn.execute(select(ts.trace_id).where(
                ts.project_id == project_id, ts.session_id.in_(chunk))).scalars())
        traces = sorted(trace_ids)

        pl = m.span_payloads.c
        for chunk in _chunks(ids):
            keys = select(sp.project_id, sp.trace_id, sp.span_id).where(sp.project_id == project_id,
                                                                        sp.session_id.in_(chunk))
            conn.execute(delete(m.span_payloads).where(tuple_(pl.project_id, pl.trace_id, pl.span_id).in_(keys)))
            removed["spans"] += conn.execute(delete(m.spans).where(
                sp.project_id == project_id, sp.session_id.in_(chunk))).rowcount or 0
        # Log records of the erased spans, and orphan records of their traces (whose span never came):
        # every record of those traces that no longer names a kept span.
        kept = select(sp.span_id).where(sp.project_id == project_id, sp.trace_id == ev.trace_id,
                                        sp.span_id == ev.span_id).exists()
        for chunk in _chunks(traces):
            conn.execute(delete(m.span_events).where(ev.project_id == project_id, ev.trace_id.in_(chunk), ~kept))
        for chunk in _chunks(ids):
            conn.execute(delete(m.trace_sessions).where(ts.project_id == project_id, ts.session_id.in_(chunk)))
            removed["scores"] += conn.execute(delete(m.scores).where(
                m.scores.c.project_id == project_id, m.scores.c.session_id.in_(chunk))).rowcount or 0
            conn.execute(delete(m.eval_jobs).where(
                m.eval_jobs.c.project_id == project_id, m.eval_jobs.c.session_id.in_(chunk)))
            removed["sessions"] += conn.execute(delete(m.sessions).where(
                se.project_id == project_id, se.session_id.in_(chunk))).rowcount or 0

        erasure = Erasure(project_id, forms, ids, traces)
        existing = set(inspect(conn).get_table_names())
        extra = MetaData()
        for name, counted_as, eraser in EXTRA_ERASERS:
            if name not in existing:
                continue
            table = Table(name, extra, autoload_with=conn)
            count = eraser(conn, table, erasure)
            if counted_as is not None:
                removed[counted_as] = removed.get(counted_as, 0) + count
    return removed
