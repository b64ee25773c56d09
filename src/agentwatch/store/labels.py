"""Human labels: a reviewer's verdict on an evaluator's score of a session.

Verdicts: ``correct`` (the score was right), ``real_failure`` (the session did
fail, as flagged), ``false_positive`` (flagged but fine), ``false_negative``
(passed but failed), ``edge_case`` (left out of agreement). A label's event
time is its session's end, so calibration windows replay like everything else.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, select

from agentwatch.errors import BadRequest, NotFound
from agentwatch.store import models as m
from agentwatch.store.models import utcnow

VERDICTS = ("correct", "real_failure", "false_positive", "false_negative", "edge_case")
_FIELDS = {"session_id", "evaluator", "verdict", "expected_score", "note", "author"}


def validate(body: Any) -> dict[str, Any]:
    """The label fields of a request body; BadRequest names the field that is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: {session_id, evaluator, verdict, expected_score?, "
                         "note?, author?}")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    for name in ("session_id", "evaluator"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise BadRequest(f"{name}: required, a non-empty string")
    if body.get("verdict") not in VERDICTS:
        raise BadRequest(f"verdict: expected one of {', '.join(VERDICTS)}, got {body.get('verdict')!r}")
    expected = body.get("expected_score")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, (int, float))
                                 or not math.isfinite(expected) or not 0.0 <= expected <= 1.0):
        raise BadRequest(f"expected_score: a number in [0, 1], got {expected!r}")
    for name in ("note", "author"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadRequest(f"{name}: a string")
    return {name: body.get(name) for name in _FIELDS}


def add_label(engine: Engine, project_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Store a label of a session that exists in the project; answers it as stored."""
    s, sc = m.sessions.c, m.scores.c
    with engine.begin() as conn:
        end_ns = conn.execute(select(s.end_ns).where(s.project_id == project_id,
                                                     s.session_id == fields["session_id"])).scalar()
        if end_ns is None:
            raise NotFound(f"session {fields['session_id']!r} not found")
        version = conn.execute(
            select(sc.evaluator_version)
            .where(sc.project_id == project_id, sc.session_id == fields["session_id"],
                   sc.evaluator == fields["evaluator"], sc.shadow.is_(False))
            .order_by(sc.created_at.desc(), sc.id.desc()).limit(1)
        ).scalar()
        row = {**fields, "project_id": project_id, "evaluator_version": version, "event_time_ns": int(end_ns),
               "created_at": utcnow()}
        label_id = conn.execute(m.labels.insert().values(**row)).inserted_primary_key[0]  # type: ignore[index]
    return {"id": int(label_id), **row}


def list_labels(engine: Engine, project_id: int, *, session_id: str | None = None, evaluator: str | None = None,
                limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
    """Labels newest first, optionally of one session and/or one evaluator."""
    lb = m.labels.c
    query = select(m.labels).where(lb.project_id == project_id)
    if session_id is not None:
        query = query.where(lb.session_id == session_id)
    if evaluator is not None:
        query = query.where(lb.evaluator == evaluator)
    if before_id is not None:
        query = query.where(lb.id < before_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(lb.id.desc()).limit(limit)).mappings()]
