"""The review queue: what a person should look at, newest first.

Three reasons put a session in the queue:

- ``flagged``: a score of it failed, or its evaluator errored;
- ``alert``: an alert names it among the sessions that show the problem;
- ``sample``: a stratified random sample of *passing* scores, so that the
  failures evaluators miss can be found and agreement is weighted honestly.
  Each evaluator is a stratum: a passing score of evaluator E on session S
  is in the sample when ``unit("review:E:S") < rate`` (default 5%), a hash
  draw independent of the head sample's; its inclusion probability is
  ``rate * p`` with p the score's own inclusion probability.

The queue reads scores newest first by event time (a session's scores share
its end time), so a page costs the rows it passes over, never the whole
store; a page passes over at most :data:`MAX_SCAN` score rows and then
answers what it found with a cursor to go on from. Filters: evaluator
(dimension), evaluator version, alert, owner (the evaluators that person
owns), reason, and state (``unreviewed`` by default: no label of the
item's evaluators yet; ``reviewed``; ``all``).

:func:`oldest_unreviewed` is the age of the oldest flagged session that has
no label yet, in wall time since it was flagged: the figure behind "every
flagged session is reviewed within 24 hours".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, or_, select

from agentwatch.errors import BadRequest, NotFound
from agentwatch.store import models as m

#: Share of passing scores sampled for review, per evaluator.
DEFAULT_SAMPLE_RATE = 0.05
#: Score rows one page may pass over before it answers with a cursor.
MAX_SCAN = 20_000
_CHUNK = 1000
_SCALE = float(2**64)
REASONS = ("flagged", "alert", "sample")
STATES = ("unreviewed", "reviewed", "all")


def review_unit(session_id: str, evaluator: str) -> float:
    """The draw that decides whether a passing score is in the review sample."""
    digest = hashlib.sha256(f"review:{evaluator}:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class ReviewFilter:
    evaluator: str | None = None
    evaluator_version: str | None = None
    alert_id: int | None = None
    #: The evaluators an owner owns (None: no owner filter).
    evaluators: frozenset[str] | None = None
    reason: str | None = None
    state: str = "unreviewed"


@dataclass
class _Item:
    session_id: str
    event_ns: int
    reasons: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    sampled_for: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)

    def add_reason(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def evaluators(self) -> list[str]:
        return list(dict.fromkeys([*self.failing, *self.sampled_for]))


def encode_cursor(event_ns: int, row_id: int) -> str:
    return f"{event_ns}.{row_id}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        event, row = cursor.split(".")
        return int(event), int(row)
    except ValueError:
        raise BadRequest(f"cursor: not a cursor this endpoint gave: {cursor!r}") from None


def alert_sessions(conn: Connection, project_id: int, alert_id: int | None = None,
                   recent: int = 500) -> dict[str, list[int]]:
    """Session id -> the alerts naming it (one alert, or the project's most recent ones)."""
    a = m.alerts.c
    query = select(a.id, a.session_ids).where(a.project_id == project_id)
    query = query.where(a.id == alert_id) if alert_id is not None else query.order_by(a.id.desc()).limit(recent)
    out: dict[str, list[int]] = {}
    found = False
    for row in conn.execute(query):
        found = True
        for session_id in row.session_ids or []:
            out.setdefault(str(session_id), []).append(int(row.id))
    if alert_id is not None and not found:
        raise NotFound(f"alert {alert_id} not found")
    return out


def queue(conn: Connection, project_id: int, flt: ReviewFilter, *, sample_rate: float = DEFAULT_SAMPLE_RATE,
          limit: int = 100, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the queue: item dicts (session id, reasons, evaluators, ...) and the next cursor."""
    if flt.state not in STATES:
        raise BadRequest(f"state: expected one of {', '.join(STATES)}, got {flt.state!r}")
    if flt.reason is not None and flt.reason not in REASONS:
        raise BadRequest(f"reason: expected one of {', '.join(REASONS)}, got {flt.reason!r}")
    alerted = alert_sessions(conn, project_id, flt.alert_id)
    if flt.alert_id is not None:
        return _alert_page(conn, project_id, flt, alerted, limit, cursor)
    sc = m.scores.c
    after = decode_cursor(cursor) if cursor else None
    items: dict[str, _Item] = {}
    labelled: set[tuple[str, str]] = set()
    group: dict[str, _Item] = {}
    group_ns: int | None = None
    position = after
    last_of_group = after
    scanned = 0
    exhausted = full = False

    def finish_group() -> None:
        kept = {k: v for k, v in group.items() if _passes(flt, v, labelled)}
        for session_id, item in kept.items():
            if session_id in alerted:
                item.add_reason("alert")
                item.alert_ids = alerted[session_id]
        items.update(kept)
        group.clear()

    while not full and scanned < MAX_SCAN:
        query = (select(sc.id, sc.session_id, sc.evaluator, sc.evaluator_version, sc.status, sc.passed,
                        sc.inclusion_probability, sc.event_time_ns)
                 .where(sc.project_id == project_id, sc.shadow.is_(False)))
        if flt.evaluator:
            query = query.where(sc.evaluator == flt.evaluator)
        if flt.evaluator_version:
            query = query.where(sc.evaluator_version == flt.evaluator_version)
        if flt.evaluators is not None:
            query = query.where(sc.evaluator.in_(sorted(flt.evaluators)))
        if position is not None:
            query = query.where(or_(sc.event_time_ns < position[0],
                                    and_(sc.event_time_ns == position[0], sc.id < position[1])))
        rows = conn.execute(query.order_by(sc.event_time_ns.desc(), sc.id.desc()).limit(_CHUNK)).all()
        if flt.state != "all":
            labelled |= labelled_pairs(conn, project_id, {r.session_id for r in rows})
        for row in rows:
            if row.event_time_ns != group_ns:
                finish_group()
                last_of_group = position
                if len(items) >= limit:
                    full = True
                    break
                group_ns = int(row.event_time_ns)
            scanned += 1
            position = (int(row.event_time_ns), int(row.id))
            failed = row.status != "ok" or row.passed is False
            reason = "flagged" if failed else (
                "sample" if review_unit(row.session_id, row.evaluator) < sample_rate else None)
            if reason is None or (flt.reason not in (None, "alert") and reason != flt.reason):
                continue
            item = group.get(row.session_id)
            if item is None:
                item = group[row.session_id] = _Item(row.session_id, int(row.event_time_ns))
            item.add_reason(reason)
            (item.failing if failed else item.sampled_for).append(row.evaluator)
            item.probabilities.append(float(row.inclusion_probability) * (1.0 if failed else sample_rate))
        if not full and len(rows) < _CHUNK:
            finish_group()
            last_of_group = position
            exhausted = True
            break
    if not full and not exhausted:
        # The scan budget ran out mid-way: answer what is complete, go on from there next time.
        last_of_group = position if not group else last_of_group
        group.clear()
    # Sessions of alerts in the stretch of time this page covered, that the scores did not bring.
    low = None if exhausted else (last_of_group[0] if last_of_group else None)
    high = after[0] if after else None
    if flt.reason in (None, "alert"):
        extra = [s for s in alerted if s not in items]
        if extra:
            se = m.sessions.c
            found = conn.execute(select(se.session_id, se.end_ns).where(se.project_id == project_id,
                                                                        se.session_id.in_(extra))).all()
            candidates = {r.session_id: _Item(r.session_id, int(r.end_ns)) for r in found
                          if (low is None or r.end_ns > low) and (high is None or r.end_ns <= high)}
            _keep(conn, project_id, flt, candidates, alerted, items, alert_only=True)
    if flt.reason == "alert":
        items = {k: v for k, v in items.items() if "alert" in v.reasons}
    ordered = sorted(items.values(), key=lambda i: (-i.event_ns, i.session_id))
    next_cursor = None if exhausted or last_of_group is None else encode_cursor(*last_of_group)
    return [_describe(i) for i in ordered], next_cursor


def _passes(flt: ReviewFilter, item: _Item, labelled: set[tuple[str, str]]) -> bool:
    if flt.state == "all":
        return True
    evaluators = item.evaluators or ([flt.evaluator] if flt.evaluator else [])
    if evaluators:
        reviewed = all((item.session_id, e) in labelled for e in evaluators)
    else:
        reviewed = any(s == item.session_id for s, _ in labelled)
    return reviewed == (flt.state == "reviewed")


def _keep(conn: Connection, project_id: int, flt: ReviewFilter, candidates: dict[str, _Item],
          alerted: dict[str, list[int]], items: dict[str, _Item], *, alert_only: bool = False) -> None:
    """Add the sessions alerts name that pass the state filter."""
    if not candidates:
        return
    labelled = labelled_pairs(conn, project_id, list(candidates)) if flt.state != "all" else set()
    for session_id, item in candidates.items():
        item.add_reason("alert")
        item.alert_ids = alerted.get(session_id, [])
        item.probabilities.append(1.0)
        if _passes(flt, item, labelled):
            items[session_id] = item


def _alert_page(conn: Connection, project_id: int, flt: ReviewFilter, alerted: dict[str, list[int]], limit: int,
                cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    se = m.sessions.c
    rows = conn.execute(select(se.session_id, se.end_ns).where(se.project_id == project_id,
                                                                se.session_id.in_(list(alerted)))).all()
    candidates = {r.session_id: _Item(r.session_id, int(r.end_ns)) for r in rows}
    items: dict[str, _Item] = {}
    _keep(conn, project_id, flt, candidates, alerted, items, alert_only=True)
    ordered = sorted(items.values(), key=lambda i: (-i.event_ns, i.session_id))
    start = int(cursor) if cursor and cursor.isdigit() else 0
    page = ordered[start:start + limit]
    more = start + limit < len(ordered)
    return [_describe(i) for i in page], str(start + limit) if more else None


def _describe(item: _Item) -> dict[str, Any]:
    return {"session_id": item.session_id, "event_ns": item.event_ns,
            "reasons": [r for r in REASONS if r in item.reasons],
            "failing": list(dict.fromkeys(item.failing)), "sampled_for": list(dict.fromkeys(item.sampled_for)),
            "alert_ids": item.alert_ids,
            "inclusion_probability": round(min(item.probabilities), 6) if item.probabilities else 1.0}


def labelled_pairs(conn: Connection, project_id: int, session_ids: Iterable[str]) -> set[tuple[str, str]]:
    lb = m.labels.c
    ids = list(session_ids)
    if not ids:
        return set()
    return {(r.session_id, r.evaluator) for r in conn.execute(
        select(lb.session_id, lb.evaluator).where(lb.project_id == project_id, lb.session_id.in_(ids)))}


def dataset_cases_of(conn: Connection, project_id: int, session_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Session id -> the dataset cases made of it: [{dataset, case_id, first_version}]."""
    ids = list(session_ids)
    if not ids:
        return {}
    c, d, mb, v = m.dataset_cases.c, m.datasets.c, m.dataset_members.c, m.dataset_versions.c
    rows = conn.execute(
        select(c.source_session_id, c.case_id, d.name, v.version)
        .select_from(m.dataset_cases.join(m.datasets, d.id == c.dataset_id)
                     .join(m.dataset_members, mb.case_row_id == c.id)
                     .join(m.dataset_versions, v.id == mb.version_id))
        .where(d.project_id == project_id, c.source_session_id.in_(ids))).all()
    found: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row.source_session_id, row.name, row.case_id)
        found[key] = min(found.get(key, row.version), row.version)
    out: dict[str, list[dict[str, Any]]] = {}
    for (session_id, name, case_id), version in sorted(found.items()):
        out.setdefault(session_id, []).append({"dataset": name, "case_id": case_id, "first_version": version})
    return out


def oldest_unreviewed(conn: Connection, project_id: int | None = None) -> tuple[str, datetime] | None:
    """(session id, when it was flagged) of the oldest flagged session no label names yet."""
    se, lb = m.sessions.c, m.labels.c
    query = (select(se.session_id, se.evaluated_at)
             .where(se.flagged.is_(True), se.evaluated_at.is_not(None),
                    ~exists().where(lb.project_id == se.project_id, lb.session_id == se.session_id))
             .order_by(se.evaluated_at).limit(1))
    if project_id is not None:
        query = query.where(se.project_id == project_id)
    row = conn.execute(query).first()
    return (row.session_id, row.evaluated_at) if row else None
