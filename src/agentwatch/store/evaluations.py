"""Evaluators, scores and the durable evaluation queue, on either engine.

The queue is a table. A completed session gets one job, written in the
transaction that completes it. Workers claim jobs with a lease: on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so several worker processes
share the queue without taking the same job; a job whose worker died is
taken again when its lease has passed. Scores are written with a unique key
(session, span, evaluator, version), so a job run twice never doubles a
score: evaluation is at-least-once, scores exactly-once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)

from agentwatch.store import models as m
from agentwatch.store.engine import insert_on_conflict
from agentwatch.store.models import utcnow

#: Evaluators are configured for the whole deployment; their rows use this project id.
GLOBAL_PROJECT = 0


@dataclass(frozen=True)
class Job:
    id: int
    project_id: int
    session_id: str
    reason: str
    evaluators: list[str] | None
    attempts: int




def enqueue(conn: Connection, project_id: int, session_ids: Iterable[str], *, reason: str = "complete",
            evaluators: list[str] | None = None) -> None:
    """Queue evaluation jobs in the caller's transaction (a completed session is queued once)."""
    now = utcnow()
    rows = [{"project_id": project_id, "session_id": sid, "reason": reason, "evaluators": evaluators,
             "state": "queued", "lease_until": None, "attempts": 0, "created_at": now} for sid in session_ids]
    if not rows:
        return
    stmt = insert_on_conflict(conn.dialect.name, m.eval_jobs)
    if reason == "complete":
        stmt = stmt.on_conflict_do_nothing(index_elements=["project_id", "session_id"],
                                           index_where=m.eval_jobs.c.reason == literal_column("'complete'"))
    conn.execute(stmt, rows)


def enqueue_window(engine: Engine, project_id: int, *, since_ns: int, until_ns: int, reason: str,
                   evaluators: list[str], sampled_only: bool = False) -> int:
    """Queue the complete sessions that ended in [since, until) and still have their payloads."""
    s = m.sessions.c
    where = [s.project_id == project_id, s.complete.is_(True), s.payload_dropped_at.is_(None),
             s.end_ns >= since_ns, s.end_ns < until_ns]
    if sampled_only:
        where.append(s.sampled.is_(True))
    with engine.begin() as conn:
        session_ids = [r[0] for r in conn.execute(select(s.session_id).where(*where).order_by(s.end_ns))]
        for i in range(0, len(session_ids), 1000):
            enqueue(conn, project_id, session_ids[i : i + 1000], reason=reason, evaluators=evaluators)
    return len(session_ids)


def older_versions(engine: Engine, name: str, version: str) -> list[str]:
    e = m.evaluators.c
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(e.version).where(
            e.project_id == GLOBAL_PROJECT, e.name == name, e.version != version))]


def claim(engine: Engine, limit: int, lease_s: float = 300.0) -> list[Job]:
    """Take up to ``limit`` jobs that are queued or whose lease passed."""
    j = m.eval_jobs.c
    now = utcnow()
    due = or_(j.state == "queued", and_(j.state == "running", j.lease_until < now))
    pick = select(j.id).where(due).order_by(j.id).limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(m.eval_jobs)
        .where(j.id.in_(pick.scalar_subquery()))
        .values(state="running", lease_until=now + timedelta(seconds=lease_s), attempts=j.attempts + 1)
        .returning(j.id, j.project_id, j.session_id, j.reason, j.evaluators, j.attempts)
    )
    with engine.begin() as conn:
        rows = conn.execute(stmt).all()
    return [Job(int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5])) for r in sorted(rows, key=lambda r: r[0])]


def pending(engine: Engine, project_id: int | None = None, reason: str | None = None) -> int:
    j = m.eval_jobs.c
    query = select(func.count()).select_from(m.eval_jobs)
    if project_id is not None:
        query = query.where(j.project_id == project_id)
    if reason is not None:
        query = query.where(j.reason == reason)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def postpone(engine: Engine, job_id: int, delay_s: float) -> None:
    """Leave a job for later: it stays leased until then, and is taken again after."""
    with engine.begin() as conn:
        conn.execute(update(m.eval_jobs).where(m.eval_jobs.c.id == job_id)
                     .values(lease_until=utcnow() + timedelta(seconds=delay_s)))


def finish(conn: Connection, job_id: int) -> None:
    conn.execute(delete(m.eval_jobs).where(m.eval_jobs.c.id == job_id))


def write_scores(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert scores; answers the rows that were new (one already written is kept as it was).

    What is answered is what the insert itself reports, so two workers racing on
    one session never both count the same score.
    """
    if not rows:
        return []
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
    s = m.scores.c
    stmt = (
        insert_on_conflict(conn.dialect.name, m.scores)
        .on_conflict_do_nothing(index_elements=["project_id", "session_id", "span_id", "evaluator",
                                                "evaluator_version"])
        .returning(s.project_id, s.session_id, s.span_id, s.evaluator, s.evaluator_version)
    )
    inserted = {tuple(r) for r in conn.execute(stmt, rows)}
    new = [r for r in rows if (r["project_id"], r["session_id"], r["span_id"], r["evaluator"],
                               r["evaluator_version"]) in inserted]
    e = m.evaluators.c
    for name, version in {(r["evaluator"], r["evaluator_version"]) for r in new}:
        conn.execute(update(m.evaluators)
                     .where(e.project_id == GLOBAL_PROJECT, e.name == name, e.version == version,
                            e.first_used_at.is_(None))
                     .values(first_used_at=now))
    return new


#: Where a span's own attributes carry evaluations (OpenInference ``evaluations.N.*``), as stored JSON text.
_EVALUATION_ATTRIBUTES = '%"evaluations.%'
#: The log record of an evaluation (``gen_ai.evaluation.result``).
_EVALUATION_EVENT = "gen_ai.evaluation.result"


def applicability(engine: Engine, project_id: int, session_ids: list[str]
                  ) -> dict[str, tuple[dict[str, Any], set[str], bool]]:
    """What decides which evaluators apply to each session, read from columns only:
    ``{session_id: (summary row, tools called, whether it may carry external evaluations)}``.

    A session that is gone is absent.
    """
    c, s, p, e = m.sessions.c, m.spans.c, m.span_payloads.c, m.span_events.c
    out: dict[str, tuple[dict[str, Any], set[str], bool]] = {}
    with engine.connect() as conn:
        for i in range(0, len(session_ids), 500):
            chunk = session_ids[i : i + 500]
            for row in conn.execute(select(m.sessions).where(c.project_id == project_id, c.session_id.in_(chunk))):
                out[row.session_id] = (dict(row._mapping), set(), False)
            for session_id, tool_name, name in conn.execute(
                    select(s.session_id, s.tool_name, s.name).where(s.project_id == project_id,
                                                                     s.session_id.in_(chunk), s.kind == "tool")):
                if session_id in out:
                    out[session_id][1].add(tool_name or name)
            external = set(conn.execute(
                select(s.session_id).distinct()
                .select_from(m.spans.join(m.span_payloads, and_(p.project_id == s.project_id,
                                                                p.trace_id == s.trace_id, p.span_id == s.span_id)))
                .where(s.project_id == project_id, s.session_id.in_(chunk),
                       cast(p.attributes, Text).like(_EVALUATION_ATTRIBUTES))).scalars())
            external.update(conn.execute(
                select(s.session_id).distinct()
                .select_from(m.spans.join(m.span_events, and_(e.project_id == s.project_id,
                                                              e.trace_id == s.trace_id, e.span_id == s.span_id)))
                .where(s.project_id == project_id, s.session_id.in_(chunk),
                       e.event_name == _EVALUATION_EVENT)).scalars())
            for session_id in external:
                if session_id in out:
                    summary, tools, _ = out[session_id]
                    out[session_id] = (summary, tools, True)
    return out


def finish_many(conn: Connection, job_ids: list[int]) -> None:
    for i in range(0, len(job_ids), 500):
        conn.execute(delete(m.eval_jobs).where(m.eval_jobs.c.id.in_(job_ids[i : i + 500])))


def mark_many(conn: Connection, marks: list[tuple[int, str, bool, bool]]) -> None:
    """:func:`mark_evaluated` for many ``(project_id, session_id, flagged, sampled)`` in one statement.

    Rows are updated in key order, the order the writer's session upsert takes their locks in too: two
    transactions that touch the same sessions then wait for each other instead of deadlocking.
    """
    if not marks:
        return
    s = m.sessions.c
    stmt = (update(m.sessions)
            .where(s.project_id == bindparam("b_project"), s.session_id == bindparam("b_session"))
            .values(flagged=or_(s.flagged, bindparam("b_flagged")), sampled=bindparam("b_sampled"),
                    evaluated_at=bindparam("b_at")))
    now = utcnow()
    conn.execute(stmt, [{"b_project": p, "b_session": sid, "b_flagged": flagged, "b_sampled": sampled, "b_at": now}
                        for p, sid, flagged, sampled in sorted(marks)])


def mark_evaluated(conn: Connection, project_id: int, session_id: str, *, flagged: bool, sampled: bool) -> None:
    s = m.sessions.c
    conn.execute(
        update(m.sessions)
        .where(s.project_id == project_id, s.session_id == session_id)
        .values(flagged=or_(s.flagged, literal(flagged)), sampled=sampled, evaluated_at=utcnow())
    )


def register_evaluators(engine: Engine, specs: Iterable[Any]) -> list[tuple[str, str]]:
    """Record every configured version; answers the (name, version) pairs that are new."""
    e = m.evaluators.c
    new = []
    now = utcnow()
    with engine.begin() as conn:
        known = {(r[0], r[1]) for r in conn.execute(
            select(e.name, e.version).where(e.project_id == GLOBAL_PROJECT))}
        for spec in specs:
            key = (spec.name, spec.version)
            if key in known:
                continue
            conn.execute(m.evaluators.insert().values(
                project_id=GLOBAL_PROJECT, name=spec.name, version=spec.version, kind=spec.kind,
                spec={**spec.content, "threshold": spec.threshold, "direction": spec.direction},
                created_at=now, first_used_at=None))
            known.add(key)
            new.append(key)
    return new


def ensure_external(conn: Connection, names: Iterable[str]) -> None:
    """External evaluators appear in the catalogue once a score of theirs arrives."""
    e = m.evaluators.c
    for name in names:
        exists = conn.execute(select(e.name).where(e.project_id == GLOBAL_PROJECT, e.name == name,
                                                   e.version == "external")).first()
        if exists is None:
            conn.execute(insert_on_conflict(conn.dialect.name, m.evaluators).values(
                project_id=GLOBAL_PROJECT, name=name, version="external", kind="external",
                spec={"kind": "external"}, created_at=utcnow(), first_used_at=None,
            ).on_conflict_do_nothing(index_elements=["project_id", "name", "version"]))


def list_evaluators(engine: Engine) -> list[dict[str, Any]]:
    e = m.evaluators.c
    with engine.connect() as conn:
        rows = conn.execute(select(m.evaluators).where(e.project_id == GLOBAL_PROJECT)
                            .order_by(e.name, e.created_at)).all()
    return [dict(r._mapping) for r in rows]


def session_scores(engine: Engine, project_id: int, session_id: str) -> list[dict[str, Any]]:
    """The session's scores by evaluator, then creation. Sorted here: an ORDER BY evaluator lets SQLite walk
    the (project, evaluator, ...) index over every score of the project instead of the session's few."""
    s = m.scores.c
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(m.scores).where(s.project_id == project_id, s.session_id == session_id))]
    return sorted(rows, key=lambda r: (r["evaluator"], r["created_at"], r["id"]))


def list_scores(engine: Engine, project_id: int, *, session_id: str | None = None, evaluator: str | None = None,
                evaluator_version: str | None = None, since_ns: int | None = None, until_ns: int | None = None,
                limit: int = 100, after: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Scores newest first by event time; ``after`` is the (event_time_ns, id) of the last one seen."""
    s = m.scores.c
    where = [s.project_id == project_id]
    if session_id is not None:
        where.append(s.session_id == session_id)
    if evaluator is not None:
        where.append(s.evaluator == evaluator)
    if evaluator_version is not None:
        where.append(s.evaluator_version == evaluator_version)
    if since_ns is not None:
        where.append(s.event_time_ns >= since_ns)
    if until_ns is not None:
        where.append(s.event_time_ns < until_ns)
    if after is not None:
        where.append(or_(s.event_time_ns < after[0], and_(s.event_time_ns == after[0], s.id < after[1])))
    query = select(m.scores).where(*where).order_by(s.event_time_ns.desc(), s.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
