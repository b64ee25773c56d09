"""Alerts, silences and the notification outbox, on either engine.

The monitor checks at event-time ticks and hands :func:`reconcile` the
:class:`~agentwatch.monitor.config.Candidate` conditions that hold at the tick,
plus the ``(kind, rule)`` pairs it checked. In the monitor's transaction:

- a candidate whose dedup key has no firing alert opens one (``started_ns``:
  the candidate's own start, else the tick; ``detected_at``: wall time);
- one that keeps holding updates its summary, figures and example ids;
- a firing alert of a checked rule whose key is neither among the candidates
  nor in ``keep_keys`` is resolved at the tick (a rule that was not checked
  at this tick leaves its alerts as they are).

One row is one firing episode: after a resolve, the same key opens a new
alert with a new id. :func:`enqueue_notifications` then writes outbox rows
(``notifications``) for the notifiers the routes pick; the
:class:`~agentwatch.alert.notify.Dispatcher` thread sends them.

An alert is not notified while it is silenced (``silenced_until`` in the
future), nor while it is inhibited: a drift or burn-rate alert while a
calibration or evaluator-errors alert of the same evaluator fires, and a
drift alert while a no-data alert of its evaluator fires. Such an alert is
notified (as a trigger) by :func:`due_repeats` once the silence ends or the
inhibiting alert resolves. A resolve goes to every notifier that was sent the trigger,
silenced or not, so no incident stays open at a pager.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, and_, exists, func, insert, or_, select, update

from agentwatch.alert.routes import Routes
from agentwatch.alert.types import KINDS, LABEL_NAMES, MAX_EXAMPLES, SEVERITIES, Candidate, alert_dict
from agentwatch.errors import BadRequest, NotFound
from agentwatch.store import models as m
from agentwatch.store.store import decode_time_cursor, encode_time_cursor
from agentwatch.timefmt import rfc3339

#: Longest a silence may last (methods.md §6).
MAX_SILENCE = timedelta(hours=24)
STATES = ("firing", "resolved")
#: Fields a silence may match on; ``labels`` matches {service, agent_version, intent}.
SILENCE_MATCHERS = ("kind", "rule", "evaluator", "severity", "dimension", "labels")


@dataclass(frozen=True)
class AlertEvent:
    """An alert opened (``trigger``) or resolved (``resolve``) by :func:`reconcile`."""

    action: str
    alert: dict[str, Any]


# -- lifecycle -----------------------------------------------------------------


def reconcile(conn: Connection, project_id: int, tick_ns: int, candidates: Iterable[Candidate],
              checked_rules: set[tuple[str, str]], *, keep_keys: Iterable[str] = frozenset(),
              keep_firing_ns: Mapping[str, int] | None = None, held: dict[str, int] | None = None,
              public_url: str | None, now: datetime) -> list[AlertEvent]:
    """Open, update and resolve the project's alerts for the conditions holding at ``tick_ns``.

    ``keep_firing_ns`` (by kind) keeps an alert of that kind firing for so long after its condition last
    held, so that a condition that stops and holds again within it stays one alert; ``held`` (the
    monitor's state: dedup key -> the last tick the condition held) is where that is remembered.
    Answers the alerts opened and resolved (updates are not events).
    """
    keep_for = dict(keep_firing_ns or {})
    if held is None:
        held = {}
    a = m.alerts.c
    firing: dict[str, dict[str, Any]] = {}
    duplicates: list[dict[str, Any]] = []
    for r in conn.execute(select(m.alerts).where(a.project_id == project_id, a.state == "firing").order_by(a.id)):
        current = dict(r._mapping)
        if current["dedup_key"] in firing:  # two episodes of one key firing at once: the older one ends
            duplicates.append(firing[current["dedup_key"]])
        firing[current["dedup_key"]] = current
    merged: dict[str, Candidate] = {}
    for candidate in candidates:
        key = candidate.dedup_key
        if key in merged:
            first = merged[key]
            merged[key] = replace(first, summary=candidate.summary, figures=candidate.figures,
                                  session_ids=_union(first.session_ids, candidate.session_ids),
                                  trace_ids=_union(first.trace_ids, candidate.trace_ids))
        else:
            merged[key] = candidate
    silences = active_silences(conn, project_id, now)
    events: list[AlertEvent] = []
    holding = set(merged) | set(keep_keys)
    # Leaders first, so that a follower of the same episode finds the alert this very tick opened.
    for key, c in sorted(merged.items(), key=lambda item: (item[1].kind, item[1].rule) in FOLLOWERS):
        if c.kind in keep_for:
            held[key] = tick_ns
        existing = firing.get(key)
        episode = _episode(c, existing, firing, holding)
        if episode is not None:
            c = replace(c, figures={**c.figures, "inhibited_by": episode},
                        summary=f"{c.summary} (part of the episode of alert {episode})")
        if existing is not None:
            values = {
                "summary": c.summary,
                "figures": _clean(c.figures),
                "session_ids": _union(existing["session_ids"] or [], c.session_ids),
                "trace_ids": _union(existing["trace_ids"] or [], c.trace_ids),
                "updated_at": now,
            }
            escalated = c.severity == "page" and existing["severity"] != "page"
            if escalated:
                # A ticket that became a page (a sampled rare event confirmed by a label, a calibration whose
                # bound fell below the floor) is sent again as a page.
                values.update(severity="page", notified_at=None)
            conn.execute(update(m.alerts).where(a.id == existing["id"]).values(**values))
            existing.update(values)
            if escalated:
                events.append(AlertEvent("trigger", alert_dict(existing, public_url)))
            continue
        row: dict[str, Any] = {
            "project_id": project_id, "dedup_key": key, "kind": c.kind, "rule": c.rule, "dimension": c.dimension,
            "evaluator": c.evaluator, "evaluator_version": c.evaluator_version, "severity": c.severity,
            "state": "firing", "started_ns": c.started_ns if c.started_ns is not None else tick_ns,
            "resolved_ns": None, "detected_at": now, "updated_at": now, "summary": c.summary,
            "labels": dict(c.labels), "figures": _clean(c.figures),
            "session_ids": _union([], c.session_ids), "trace_ids": _union([], c.trace_ids), "owner": c.owner,
            "acknowledged_at": None, "acknowledged_by": None, "notified_at": None,
        }
        until = [s["expires_at"] for s in silences if silence_matches(s["matchers"], row)]
        row["silenced_until"] = max(until) if until else None
        row["id"] = _inserted_id(conn.execute(insert(m.alerts).values(**row)))
        firing[key] = row
        events.append(AlertEvent("trigger", alert_dict(row, public_url)))
    keep = set(keep_keys) | set(merged)
    # Hysteresis: a condition that stopped holding less than keep_firing_for ago keeps its alert firing.
    keep |= {key for key, row in firing.items()
             if row["kind"] in keep_for and tick_ns - held.get(key, int(row["started_ns"])) < keep_for[row["kind"]]}
    ending = duplicates + [row for key, row in firing.items()
                           if key not in keep and (row["kind"], row["rule"]) in checked_rules]
    for row in ending:
        values = {"state": "resolved", "resolved_ns": max(tick_ns, row["started_ns"]), "updated_at": now}
        conn.execute(update(m.alerts).where(a.id == row["id"]).values(**values))
        row.update(values)
        events.append(AlertEvent("resolve", alert_dict(row, public_url)))
    still = {key for key, row in firing.items() if row["state"] == "firing"}
    for key in [k for k in held if k not in still]:
        del held[key]
    return events


#: Alerts that follow an episode another alert of the same evaluator leads, and the (kind, rule) of the leaders:
#: a surge of an evaluator's failure reasons, and a slow-drift ticket, while its drift or SLO burn pages.
FOLLOWERS: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {
    ("new_cluster", "surge"): (("drift", None), ("burn_rate", None)),
    ("drift", "cusum"): (("drift", "z"), ("burn_rate", None)),
}


def _leads(row: Mapping[str, Any], follower: Candidate) -> bool:
    """Whether a firing alert leads the follower's episode: a leader kind, the same evaluator, and the same
    service (and agent version for a slow drift) where the leader is narrowed by them."""
    if row["evaluator"] != follower.evaluator or not any(
            row["kind"] == kind and rule in (None, row["rule"]) for kind, rule in
            FOLLOWERS[(follower.kind, follower.rule)]):
        return False
    if (row["kind"], row["rule"]) == (follower.kind, follower.rule):
        return False
    labels = row["labels"] or {}
    names = ("service", "agent_version") if follower.kind == "drift" else ("service",)
    return all(not labels.get(name) or not follower.labels.get(name) or labels[name] == follower.labels[name]
               for name in names)


def _episode(candidate: Candidate, existing: Mapping[str, Any] | None, firing: Mapping[str, Mapping[str, Any]],
             holding: set[str]) -> int | None:
    """The id of the firing alert (a drift or burn-rate page of the same evaluator) whose episode a follower
    (a surge of that evaluator's failure reasons, a slow-drift ticket) is part of; once linked, it stays."""
    if (candidate.kind, candidate.rule) not in FOLLOWERS or not candidate.evaluator:
        return None
    linked = ((existing or {}).get("figures") or {}).get("inhibited_by")
    if isinstance(linked, int):
        return linked
    found = [int(row["id"]) for key, row in firing.items() if key in holding and _leads(row, candidate)]
    return min(found) if found else None


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _union(first: Sequence[str], more: Sequence[str]) -> list[str]:
    """``first`` then the new ones of ``more``, in order, at most MAX_EXAMPLES."""
    out = list(dict.fromkeys([*first, *more]))
    return out[:MAX_EXAMPLES]


def _clean(value: Any) -> Any:
    """JSON-safe figures: non-finite numbers become null (PostgreSQL's JSONB refuses NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# -- reading and acknowledging -------------------------------------------------


def list_alerts(conn: Connection, project_id: int, *, state: str | None = None, kind: str | None = None,
                since_ns: int | None = None, limit: int = 100,
                cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Alert rows, newest first (by ``started_ns``, then id), and the cursor of the next page."""
    a = m.alerts.c
    where = [a.project_id == project_id]
    if state:
        if state not in STATES:
            raise BadRequest(f"state: expected firing or resolved, got {state!r}")
        where.append(a.state == state)
    if kind:
        if kind not in KINDS:
            raise BadRequest(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        where.append(a.kind == kind)
    if since_ns is not None:
        where.append(a.started_ns >= since_ns)
    if cursor:
        started_ns, alert_id = decode_time_cursor(cursor)
        where.append(or_(a.started_ns < started_ns, and_(a.started_ns == started_ns, a.id < alert_id)))
    query = select(m.alerts).where(*where).order_by(a.started_ns.desc(), a.id.desc()).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_time_cursor(rows[-1]["started_ns"], rows[-1]["id"]) if more and rows else None)


def get_alert(conn: Connection, project_id: int, alert_id: int) -> dict[str, Any]:
    a = m.alerts.c
    row = conn.execute(select(m.alerts).where(a.project_id == project_id, a.id == alert_id)).first()
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    return dict(row._mapping)


def acknowledge(conn: Connection, project_id: int, alert_id: int, by: str | None, now: datetime) -> dict[str, Any]:
    """Mark the alert acknowledged (it gets no more repeats); a second ack keeps the first one."""
    row = get_alert(conn, project_id, alert_id)
    if row["acknowledged_at"] is None:
        values = {"acknowledged_at": now, "acknowledged_by": by, "updated_at": now}
        conn.execute(update(m.alerts).where(m.alerts.c.id == alert_id).values(**values))
        row.update(values)
    return row


# -- silences --------------------------------------------------------------------


def validate_matchers(matchers: Any) -> dict[str, Any]:
    """The matchers of a silence, checked; :class:`BadRequest` names the bad field."""
    known = ", ".join(SILENCE_MATCHERS)
    if not isinstance(matchers, Mapping) or not matchers:
        raise BadRequest(f"matchers: required, a mapping of at least one of {known}")
    out: dict[str, Any] = {}
    for key, value in matchers.items():
        if key == "labels":
            if not isinstance(value, Mapping) or not value:
                raise BadRequest(f"matchers.labels: expected a mapping of {', '.join(LABEL_NAMES)}")
            for name, wanted in value.items():
                if name not in LABEL_NAMES:
                    raise BadRequest(f"matchers.labels.{name}: unknown label (known: {', '.join(LABEL_NAMES)})")
                if not isinstance(wanted, str):
                    raise BadRequest(f"matchers.labels.{name}: expected a string")
            out["labels"] = {str(k): v for k, v in value.items()}
        elif key in SILENCE_MATCHERS:
            if not isinstance(value, str) or not value:
                raise BadRequest(f"matchers.{key}: expected a non-empty string")
            allowed = {"kind": KINDS, "severity": SEVERITIES}.get(key)
            if allowed is not None and value not in allowed:
                raise BadRequest(f"matchers.{key}: expected one of {', '.join(allowed)}, got {value!r}")
            out[key] = value
        else:
            raise BadRequest(f"matchers.{key}: unknown matcher (known: {known})")
    return out


def silence_matches(matchers: Mapping[str, Any], alert: Mapping[str, Any]) -> bool:
    """Whether every matcher holds for the alert (a row, an alert dict, anything with its fields)."""
    for key, wanted in matchers.items():
        if key == "labels":
            labels = alert.get("labels") or {}
            if any((labels.get(name) or "") != value for name, value in wanted.items()):
                return False
        elif (alert.get(key) or "") != wanted:
            return False
    return True


def active_silences(conn: Connection, project_id: int, now: datetime) -> list[dict[str, Any]]:
    s = m.silences.c
    return [dict(r._mapping) for r in conn.execute(
        select(m.silences).where(s.project_id == project_id, s.expires_at > now).order_by(s.id))]


def create_silence(conn: Connection, project_id: int, matchers: Any, author: Any, comment: Any,
                   expires_at: datetime, now: datetime) -> dict[str, Any]:
    """Store a silence and silence the firing alerts it matches until it expires.

    Answers the silence row with ``matched_alerts``, the ids of the firing alerts it silenced.
    """
    checked = validate_matchers(matchers)
    if not isinstance(author, str) or not author.strip():
        raise BadRequest("author: required, who is silencing")
    if not isinstance(comment, str) or not comment.strip():
        raise BadRequest("comment: required, why (a ticket or incident reference helps)")
    if expires_at.tzinfo is None:
        raise BadRequest("expires_at: expected a time with a zone (Z or an offset)")
    if expires_at <= now:
        raise BadRequest(f"expires_at: must be in the future (now is {rfc3339(now)})")
    if expires_at > now + MAX_SILENCE:
        raise BadRequest(f"expires_at: a silence lasts at most 24h (until {rfc3339(now + MAX_SILENCE)} at the "
                         "latest); create a new one when it ends")
    row: dict[str, Any] = {"project_id": project_id, "matchers": checked, "author": author.strip(),
                           "comment": comment.strip(), "created_at": now, "expires_at": expires_at}
    row["id"] = _inserted_id(conn.execute(insert(m.silences).values(**row)))
    a = m.alerts.c
    matched = []
    for r in conn.execute(select(m.alerts).where(a.project_id == project_id, a.state == "firing")):
        alert = dict(r._mapping)
        if not silence_matches(checked, alert):
            continue
        current = alert["silenced_until"]
        if current is None or current < expires_at:
            conn.execute(update(m.alerts).where(a.id == alert["id"]).values(silenced_until=expires_at))
        matched.append(int(alert["id"]))
    row["matched_alerts"] = matched
    return row


def list_silences(conn: Connection, project_id: int, active_only: bool = True, *, now: datetime | None = None,
                  limit: int = 1000, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Silences newest first (only those not expired at ``now`` unless ``active_only`` is false)."""
    s = m.silences.c
    where = [s.project_id == project_id]
    if active_only:
        where.append(s.expires_at > (now or m.utcnow()))
    if cursor:
        try:
            where.append(s.id < int(cursor))
        except ValueError:
            raise BadRequest("cursor is not one this server issued") from None
    rows = [dict(r._mapping) for r in conn.execute(
        select(m.silences).where(*where).order_by(s.id.desc()).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1]["id"]) if more and rows else None)


# -- notifications -----------------------------------------------------------------


def inhibitor(conn: Connection, project_id: int, alert: Mapping[str, Any]) -> int | None:
    """The id of a firing alert that mutes this one, if any: a calibration or evaluator-errors alert mutes
    the drift and burn-rate alerts of its evaluator, a no-data alert of an evaluator its drift alerts.
    A follower linked to an episode (``figures.inhibited_by``) is muted by it for good: the leader's
    notifications speak for the episode, before and after it resolves."""
    linked = (alert.get("figures") or {}).get("inhibited_by")
    if (alert["kind"], alert["rule"]) in FOLLOWERS and isinstance(linked, int):
        return linked
    if not alert["evaluator"] or alert["kind"] not in ("drift", "burn_rate"):
        return None
    sources = ("calibration", "evaluator_errors", "no_data") if alert["kind"] == "drift" else (
        "calibration", "evaluator_errors")
    a = m.alerts.c
    found = conn.execute(select(a.id).where(
        a.project_id == project_id, a.state == "firing", a.kind.in_(sources), a.evaluator == alert["evaluator"],
    ).order_by(a.id).limit(1)).scalar()
    return None if found is None else int(found)


def _muted(conn: Connection, project_id: int, row: Mapping[str, Any], now: datetime) -> bool:
    until = row["silenced_until"]
    return (until is not None and until > now) or inhibitor(conn, project_id, row) is not None


def _outbox(project_id: int, alert_id: int, notifier: str, event: str, now: datetime) -> dict[str, Any]:
    return {"project_id": project_id, "alert_id": alert_id, "notifier": notifier, "event": event,
            "state": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None, "created_at": now,
            "sent_at": None}


def enqueue_notifications(conn: Connection, project_id: int, events: Sequence[AlertEvent], routes: Routes, *,
                          now: datetime | None = None) -> int:
    """Write the outbox rows of the events in the caller's transaction; answers how many.

    A trigger goes to the notifiers the routes pick, unless the alert is
    silenced or inhibited at ``now`` (then :func:`due_repeats` sends it later);
    a resolve goes to the notifiers that were sent the alert's trigger.
    """
    now = now or m.utcnow()
    if not events:
        return 0
    a, n = m.alerts.c, m.notifications.c
    ids = [int(e.alert["id"]) for e in events]
    rows = {int(r.id): dict(r._mapping) for r in conn.execute(
        select(m.alerts).where(a.project_id == project_id, a.id.in_(ids)))}
    out: list[dict[str, Any]] = []
    for event in events:
        row = rows.get(int(event.alert["id"]))
        if row is None:
            continue
        if event.action == "resolve":
            notified = conn.execute(
                select(n.notifier).where(n.project_id == project_id, n.alert_id == row["id"],
                                         n.event.in_(("trigger", "repeat"))).distinct()).scalars().all()
            out.extend(_outbox(project_id, row["id"], name, "resolve", now) for name in sorted(notified))
            continue
        if _muted(conn, project_id, row, now):
            continue
        out.extend(_outbox(project_id, row["id"], notifier.name, event.action, now)
                   for notifier in routes.notifiers_for(row))
        conn.execute(update(m.alerts).where(a.id == row["id"]).values(notified_at=now))
    if out:
        conn.execute(insert(m.notifications), out)
    return len(out)


def due_repeats(conn: Connection, now: datetime, repeat_interval_s: Mapping[str, float], routes: Routes, *,
                project_id: int | None = None) -> int:
    """Queue a ``repeat`` for each firing, unacknowledged, unsilenced alert last notified longer ago than
    its severity's repeat interval, and a ``trigger`` for one never notified (its silence ended, or its
    inhibiting alert resolved). Answers how many outbox rows were written.
    """
    a = m.alerts.c
    where = [a.state == "firing", a.acknowledged_at.is_(None), or_(a.silenced_until.is_(None),
                                                                  a.silenced_until <= now)]
    if project_id is not None:
        where.append(a.project_id == project_id)
    due = []
    for severity in SEVERITIES:
        cutoff = now - timedelta(seconds=float(repeat_interval_s.get(severity, 4 * 3600.0)))
        due.append(and_(a.severity == severity, or_(a.notified_at.is_(None), a.notified_at <= cutoff)))
    out: list[dict[str, Any]] = []
    for r in conn.execute(select(m.alerts).where(*where, or_(*due)).order_by(a.id)):
        row = dict(r._mapping)
        if inhibitor(conn, row["project_id"], row) is not None:
            continue
        cutoff = now - timedelta(seconds=float(repeat_interval_s.get(row["severity"], 4 * 3600.0)))
        # Another dispatcher may be here at the same time: only the one whose update lands writes rows.
        claimed = conn.execute(update(m.alerts).where(
            a.id == row["id"], or_(a.notified_at.is_(None), a.notified_at <= cutoff)).values(notified_at=now))
        if claimed.rowcount != 1:
            continue
        event = "trigger" if row["notified_at"] is None else "repeat"
        out.extend(_outbox(row["project_id"], row["id"], notifier.name, event, now)
                   for notifier in routes.notifiers_for(row))
    if out:
        conn.execute(insert(m.notifications), out)
    return len(out)


def pending_notifications(conn: Connection, project_id: int | None = None) -> int:
    """Outbox rows not yet sent nor given up."""
    n = m.notifications.c
    query = select(func.count()).select_from(m.notifications).where(n.state == "pending")
    if project_id is not None:
        query = query.where(n.project_id == project_id)
    return int(conn.execute(query).scalar_one())


def claim_notifications(engine: Engine, now: datetime, *, limit: int = 20,
                        lease_s: float = 300.0) -> list[dict[str, Any]]:
    """Take up to ``limit`` due outbox rows, oldest first, leasing them for ``lease_s`` (a dispatcher that
    dies mid-send leaves them to be taken again). A row waits while an earlier row for the same alert and
    notifier is pending, so a resolve never overtakes its trigger."""
    n = m.notifications.c
    earlier = m.notifications.alias("earlier")
    e = earlier.c
    blocked = exists().where(e.alert_id == n.alert_id, e.notifier == n.notifier, e.id < n.id, e.state == "pending")
    pick = select(n.id).where(n.state == "pending", n.next_attempt_at <= now, ~blocked).order_by(n.id).limit(limit)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True, of=m.notifications)
    stmt = (update(m.notifications).where(n.id.in_(pick.scalar_subquery()))
            .values(next_attempt_at=now + timedelta(seconds=lease_s)).returning(*m.notifications.c))
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    return sorted(rows, key=lambda r: int(r["id"]))


def record_attempt(engine: Engine, notification_id: int, *, state: str, attempts: int,
                   next_attempt_at: datetime, last_error: str | None, sent_at: datetime | None) -> None:
    """The outcome of one send: ``sent``, ``failed`` (given up) or ``pending`` again (a retry)."""
    with engine.begin() as conn:
        conn.execute(update(m.notifications).where(m.notifications.c.id == notification_id).values(
            state=state, attempts=attempts, next_attempt_at=next_attempt_at, last_error=last_error,
            sent_at=sent_at))


def alert_row(engine: Engine, alert_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(m.alerts).where(m.alerts.c.id == alert_id)).first()
    return None if row is None else dict(row._mapping)


def firing_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Firing alerts by (kind, severity), over every project (for ``/metrics``)."""
    a = m.alerts.c
    with engine.connect() as conn:
        rows = conn.execute(select(a.kind, a.severity, func.count()).where(a.state == "firing")
                            .group_by(a.kind, a.severity)).all()
    return {(str(kind), str(severity)): int(count) for kind, severity, count in rows}
