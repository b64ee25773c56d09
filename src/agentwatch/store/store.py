"""The store: projects, API keys and the read side of sessions and spans.

Writes of telemetry go through :class:`~agentwatch.store.writer.Writer`;
everything else reads and writes here, on either engine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from agentwatch.errors import BadRequest, NotFound
from agentwatch.store import models as m
from agentwatch.store.engine import make_engine, migrate
from agentwatch.store.models import utcnow

KEY_PREFIX = "aw_"


@dataclass(frozen=True)
class ApiKey:
    id: int
    project: str
    name: str
    prefix: str
    created_at: Any
    revoked_at: Any


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SessionFilter:
    service: str | None = None
    agent_version: str | None = None
    intent: str | None = None
    user_id: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    flagged: bool | None = None
    complete: bool | None = None
    #: Only sessions with a failing (non-shadow) score of this evaluator.
    failing: str | None = None


class Store:
    """One database, either engine."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "normal") -> None:
        self.url = url
        self.engine: Engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.dialect = self.engine.dialect.name

    def migrate(self) -> str:
        return migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- projects and keys -------------------------------------------------

    def ensure_project(self, name: str) -> int:
        p = m.projects.c
        with self.engine.begin() as conn:
            found = conn.execute(select(p.id).where(p.name == name)).scalar()
            if found is not None:
                return int(found)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(m.projects.insert().values(name=name, created_at=utcnow()))
                return int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            with self.engine.begin() as conn:
                return int(conn.execute(select(p.id).where(p.name == name)).scalar_one())

    def project_name(self, project_id: int) -> str:
        with self.engine.connect() as conn:
            name = conn.execute(select(m.projects.c.name).where(m.projects.c.id == project_id)).scalar()
        if name is None:
            raise NotFound(f"project {project_id} does not exist")
        return str(name)

    def create_key(self, project: str, name: str = "default") -> tuple[ApiKey, str]:
        """A new key for ``project`` (created if missing); the plaintext is shown once."""
        project_id = self.ensure_project(project)
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            key_id = conn.execute(
                m.api_keys.insert().values(project_id=project_id, name=name, prefix=plaintext[:10],
                                           key_hash=hash_key(plaintext), created_at=now)
            ).inserted_primary_key[0]  # type: ignore[index]
        return ApiKey(int(key_id), project, name, plaintext[:10], now, None), plaintext

    def list_keys(self) -> list[ApiKey]:
        k, p = m.api_keys.c, m.projects.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(k.id, p.name, k.name, k.prefix, k.created_at, k.revoked_at)
                .join_from(m.api_keys, m.projects, k.project_id == p.id)
                .order_by(k.id)
            ).all()
        return [ApiKey(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def revoke_key(self, key: str) -> ApiKey:
        """Revoke by id or by the key's shown prefix."""
        k = m.api_keys.c
        cond = k.prefix == key
        if key.isdigit():
            cond = or_(k.id == int(key), cond)
        with self.engine.begin() as conn:
            ids = conn.execute(select(k.id).where(cond)).scalars().all()
            if not ids:
                raise NotFound(f"no API key with id or prefix {key!r}")
            if len(ids) > 1:
                raise BadRequest(f"{key!r} matches {len(ids)} keys; revoke by id")
            conn.execute(update(m.api_keys).where(k.id == ids[0], k.revoked_at.is_(None)).values(revoked_at=utcnow()))
        return next(x for x in self.list_keys() if x.id == ids[0])

    def active_keys(self) -> dict[str, int]:
        """``{key hash: project id}`` of every key not revoked."""
        k = m.api_keys.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(k.key_hash, k.project_id).where(k.revoked_at.is_(None))).all()
        return {r[0]: int(r[1]) for r in rows}

    # -- sessions ----------------------------------------------------------

    def list_sessions(
        self, project_id: int, flt: SessionFilter, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        c = m.sessions.c
        where = [c.project_id == project_id]
        for name in ("service", "agent_version", "intent", "user_id"):
            value = getattr(flt, name)
            if value is not None:
                where.append(c[name] == value)
        if flt.since_ns is not None:
            where.append(c.start_ns >= flt.since_ns)
        if flt.until_ns is not None:
            where.append(c.start_ns < flt.until_ns)
        if flt.flagged is not None:
            where.append(c.flagged.is_(flt.flagged))
        if flt.complete is not None:
            where.append(c.complete.is_(flt.complete))
        if flt.failing is not None:
            sc = m.scores.c
            # Looked up per session on the (project, session, ...) unique index: the evaluator is compared
            # through coalesce (it is never null) so that no planner walks every score of the evaluator instead.
            where.append(exists().where(sc.project_id == c.project_id, sc.session_id == c.session_id,
                                        func.coalesce(sc.evaluator, "") == flt.failing, sc.passed.is_(False),
                                        sc.shadow.is_(False)))
        if cursor:
            start_ns, session_id = _decode_cursor(cursor)
            where.append(or_(c.start_ns < start_ns, and_(c.start_ns == start_ns, c.session_id < session_id)))
        query = select(m.sessions).where(*where).order_by(c.start_ns.desc(), c.session_id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            more = len(rows) > limit
            rows = rows[:limit]
            traces = self._trace_ids(conn, project_id, [r["session_id"] for r in rows])
        for row in rows:
            row["trace_ids"] = traces.get(row["session_id"], [])
        next_cursor = _encode_cursor(rows[-1]["start_ns"], rows[-1]["session_id"]) if more and rows else None
        return rows, next_cursor

    def get_session(self, project_id: int, session_id: str) -> dict[str, Any]:
        c = m.sessions.c
        with self.engine.connect() as conn:
            row = conn.execute(select(m.sessions).where(c.project_id == project_id, c.session_id == session_id)).first()
            if row is None:
                raise NotFound(f"session {session_id!r} not found")
            out = dict(row._mapping)
            out["trace_ids"] = self._trace_ids(conn, project_id, [session_id]).get(session_id, [])
        return out

    def _trace_ids(self, conn: Any, project_id: int, session_ids: list[str]) -> dict[str, list[str]]:
        if not session_ids:
            return {}
        s = m.spans.c
        out: dict[str, list[str]] = {}
        rows = conn.execute(
            select(s.session_id, s.trace_id, s.start_ns)
            .where(s.project_id == project_id, s.session_id.in_(session_ids))
            .order_by(s.start_ns)
        )
        for session_id, trace_id, _ in rows:
            traces = out.setdefault(session_id, [])
            if trace_id not in traces:
                traces.append(trace_id)
        return out

    def sessions_with_spans(self, project_id: int, session_ids: list[str]
                            ) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Summaries and span rows (payloads and log records attached) of many sessions, in four reads.

        A session that is gone (erased, merged into another) is absent from the answer.
        """
        c, s = m.sessions.c, m.spans.c
        out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        if not session_ids:
            return out
        with self.engine.connect() as conn:
            for row in conn.execute(select(m.sessions).where(c.project_id == project_id,
                                                             c.session_id.in_(session_ids))):
                summary = dict(row._mapping)
                summary["trace_ids"] = []
                out[summary["session_id"]] = (summary, [])
        where = and_(s.project_id == project_id, s.session_id.in_(list(out)))
        for span in self._spans(where, project_id):
            entry = out.get(span["session_id"])
            if entry is None:
                continue
            entry[1].append(span)
            if span["trace_id"] not in entry[0]["trace_ids"]:
                entry[0]["trace_ids"].append(span["trace_id"])
        return out

    def spans_of_session(self, project_id: int, session_id: str) -> list[dict[str, Any]]:
        s = m.spans.c
        return self._spans(and_(s.project_id == project_id, s.session_id == session_id), project_id)

    def spans_of_trace(self, project_id: int, trace_id: str) -> list[dict[str, Any]]:
        s = m.spans.c
        return self._spans(and_(s.project_id == project_id, s.trace_id == trace_id), project_id)

    def _spans(self, where: Any, project_id: int) -> list[dict[str, Any]]:
        s, e, r = m.spans.c, m.span_events.c, m.resources.c
        with self.engine.connect() as conn:
            rows = [dict(x._mapping) for x in conn.execute(with_payloads(select(m.spans)).where(where)
                                                            .order_by(s.start_ns))]
            keys = {(x["trace_id"], x["span_id"]) for x in rows}
            resource_keys = {x["resource_key"] for x in rows if x["resource_key"]}
            resources = {}
            if resource_keys:
                resources = {
                    k: a for k, a in conn.execute(select(r.key, r.attributes).where(r.key.in_(resource_keys)))
                }
            events: dict[tuple[str, str], list[dict[str, Any]]] = {}
            trace_ids = sorted({k[0] for k in keys})
            if trace_ids:
                for ev in conn.execute(
                    select(m.span_events)
                    .where(e.project_id == project_id, e.trace_id.in_(trace_ids))
                    .order_by(e.id)
                ):
                    key = (ev.trace_id, ev.span_id)
                    if key in keys:
                        events.setdefault(key, []).append(dict(ev._mapping))
        for row in rows:
            row["resource"] = resources.get(row["resource_key"], {})
            row["log_records"] = events.get((row["trace_id"], row["span_id"]), [])
        return rows


def with_payloads(query: Any) -> Any:
    """``query`` on ``spans`` with each span's payload columns (None once retention dropped them)."""
    s, p = m.spans.c, m.span_payloads.c
    return query.add_columns(p.attributes, p.events, p.links).select_from(m.spans.outerjoin(
        m.span_payloads, and_(p.project_id == s.project_id, p.trace_id == s.trace_id, p.span_id == s.span_id)))


def encode_time_cursor(time_ns: int, row_id: int) -> str:
    """The cursor of a list ordered by (time, id), newest first: ``<time_ns>.<id>``."""
    return f"{int(time_ns)}.{int(row_id)}"


def decode_time_cursor(cursor: str) -> tuple[int, int]:
    """(time_ns, id) of a cursor :func:`encode_time_cursor` made; BadRequest for any other."""
    time_ns, _, row_id = cursor.partition(".")
    try:
        return int(time_ns), int(row_id)
    except ValueError:
        raise BadRequest("cursor is not one this server issued") from None


def _encode_cursor(start_ns: int, session_id: str) -> str:
    raw = json.dumps([start_ns, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start_ns, session_id = json.loads(raw)
        return int(start_ns), str(session_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest("cursor is not one this server issued") from exc
