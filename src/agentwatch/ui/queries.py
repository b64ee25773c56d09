"""The dashboard's own reads: series over time, version markers, score histograms and cluster counts.

Everything the API already answers (sessions, spans, scores, alerts, SLOs,
clusters, evaluators) the pages read through the same functions the API
handlers call. What is here has no API twin: the rolling mean of a
dimension per time bucket and its baseline, read from the rollups (one row
per bucket, never per score); the event time each evaluator and agent
version was first seen in a window, from the hourly rollups; a score histogram of one
evaluator version over a window (its newest few thousand), counted by the database
on the ``(project, evaluator, version, event time)`` index; a template's hits per
bucket. No read loads a table: each groups or limits in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, case, func, select

from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.rollups import HOUR_NS, SESSION_DIMENSION, ZERO, Totals

NS = 1_000_000_000
#: Buckets of a score histogram over [0, 1].
HISTOGRAM_BINS = 10
#: Scores per histogram: the newest of the window.
HISTOGRAM_SAMPLE = 2000
_SUMS = ("count", "weighted_count", "weighted_sum", "weighted_sum_sq", "failures", "weighted_failures", "errors")


@dataclass(frozen=True)
class Point:
    """One time bucket of a dimension."""

    start_ns: int
    totals: Totals


def latest_event_ns(conn: Connection, project_id: int) -> int | None:
    """The start of the newest session (the index's last entry), the dashboard's "now" before any tick."""
    s = m.sessions.c
    value = conn.execute(select(func.max(s.start_ns)).where(s.project_id == project_id)).scalar()
    return None if value is None else int(value)


def projects(conn: Connection) -> list[tuple[int, str]]:
    p = m.projects.c
    return [(int(r[0]), str(r[1])) for r in conn.execute(select(p.id, p.name).order_by(p.name))]


def label_values(conn: Connection, project_id: int, since_ns: int, until_ns: int) -> dict[str, list[str]]:
    """The services and agent versions with sessions in [since, until), from the hourly session buckets."""
    r = m.rollups_hourly.c
    since_ns -= since_ns % HOUR_NS
    out: dict[str, list[str]] = {}
    for name in ("service", "agent_version"):
        rows = conn.execute(select(r[name]).where(
            r.project_id == project_id, r.dimension == SESSION_DIMENSION, r.minute_ns >= since_ns,
            r.minute_ns < until_ns).group_by(r[name]).order_by(r[name]))
        out[name] = [str(v[0]) for v in rows if v[0]]
    return out


def _narrow(table: Any, labels: Mapping[str, str | None]) -> list[Any]:
    r = table.c
    return [r[name] == value for name, value in labels.items() if value]


def series(conn: Connection, project_id: int, dimension: str, *, since_ns: int, until_ns: int, bucket_ns: int,
           labels: Mapping[str, str | None] | None = None, evaluator_version: str | None = None) -> list[Point]:
    """The sums of ``dimension`` per ``bucket_ns`` (aligned to UTC) from the bucket holding ``since`` to
    ``until``, summed over the series that match.

    Buckets of an hour or more read the hourly table, shorter ones the minute table; the database
    sums each stored bucket, so the answer has one row per stored minute or hour, whatever the traffic.
    """
    table = m.rollups_hourly if bucket_ns >= HOUR_NS and bucket_ns % HOUR_NS == 0 else m.rollups
    r = table.c
    where = [r.project_id == project_id, r.dimension == dimension, r.minute_ns >= since_ns - since_ns % bucket_ns,
             r.minute_ns < until_ns, *_narrow(table, labels or {})]
    if evaluator_version:
        where.append(r.evaluator_version == evaluator_version)
    query = (select(r.minute_ns, *(func.sum(r[name]) for name in _SUMS)).where(*where)
             .group_by(r.minute_ns).order_by(r.minute_ns))
    buckets: dict[int, Totals] = {}
    for row in conn.execute(query):
        start = int(row[0]) - int(row[0]) % bucket_ns  # buckets aligned to UTC, as the stored hours are
        found = Totals(*(float(v or 0.0) for v in row[1:]))
        buckets[start] = buckets[start] + found if start in buckets else found
    return [Point(start, buckets[start]) for start in sorted(buckets)]


def window_totals(conn: Connection, project_id: int, dimension: str, *, since_ns: int, until_ns: int,
                  labels: Mapping[str, str | None] | None = None, evaluator_version: str | None = None) -> Totals:
    """One sum over [since, until) (whole hours from the hourly table), as the monitor reads it."""
    narrowed = {name: value for name, value in (labels or {}).items() if value}
    if evaluator_version:
        narrowed["evaluator_version"] = evaluator_version
    found = rollups.series_totals(conn, project_id, dimension, since_ns=since_ns, until_ns=until_ns,
                                  group_by=(), **narrowed)
    return found.get((), ZERO)


def first_seen(conn: Connection, project_id: int, dimension: str, column: str, *, since_ns: int,
               until_ns: int) -> list[tuple[str, int]]:
    """(value, the first event-time hour it has in [since, until)) of ``column`` (evaluator_version or
    agent_version) in ``dimension``'s hourly buckets, oldest first. A value first met at the window's start
    may be older; one first met later is new in the window. The read is bounded by the window."""
    r = m.rollups_hourly.c
    rows = conn.execute(select(r[column], func.min(r.minute_ns)).where(
        r.project_id == project_id, r.dimension == dimension, r.minute_ns >= since_ns - since_ns % HOUR_NS,
        r.minute_ns < until_ns).group_by(r[column]))
    return sorted(((str(v), int(t)) for v, t in rows if v), key=lambda item: item[1])


def score_histogram(conn: Connection, project_id: int, evaluator: str, evaluator_version: str, *,
                    since_ns: int, until_ns: int, newest: int = HISTOGRAM_SAMPLE) -> list[int]:
    """Counts of the version's latest ``newest`` scores (not shadow, not errors) in [since, until), in
    ``HISTOGRAM_BINS`` equal bins of [0, 1]. The latest few thousand read off the index's end give the shape
    of the distribution at a cost that does not grow with the traffic."""
    s = m.scores.c
    latest = (select(s.score).where(
        s.project_id == project_id, s.evaluator == evaluator, s.evaluator_version == evaluator_version,
        s.event_time_ns >= since_ns, s.event_time_ns < until_ns, s.score.is_not(None), s.shadow.is_(False))
        .order_by(s.event_time_ns.desc()).limit(newest).subquery())
    # Bins by comparison: a cast of score * bins would round on one engine and truncate on the other.
    binned = case(*((latest.c.score < (i + 1) / HISTOGRAM_BINS, i) for i in range(HISTOGRAM_BINS - 1)),
                  else_=HISTOGRAM_BINS - 1)
    counts = [0] * HISTOGRAM_BINS
    for index, count in conn.execute(select(binned, func.count()).group_by(binned)):
        counts[min(max(int(index or 0), 0), HISTOGRAM_BINS - 1)] += int(count)
    return counts


def template_counts(conn: Connection, project_id: int, template_ids: list[int], *, since_ns: int, until_ns: int,
                    bucket_ns: int) -> dict[int, list[int]]:
    """Hits of each template per ``bucket_ns`` over [since, until), counted by the database."""
    if not template_ids:
        return {}
    h = m.template_hits.c
    nbuckets = max(1, -(-(until_ns - since_ns) // bucket_ns))
    bucket = (h.event_ns - since_ns) // bucket_ns  # integer division on both engines
    rows = conn.execute(select(h.template_id, bucket, func.count()).where(
        h.project_id == project_id, h.template_id.in_(template_ids), h.event_ns >= since_ns,
        h.event_ns < until_ns).group_by(h.template_id, bucket))
    out = {template_id: [0] * nbuckets for template_id in template_ids}
    for template_id, index, count in rows:
        position = min(max(int(index or 0), 0), nbuckets - 1)
        out[int(template_id)][position] += int(count)
    return out


def template_examples(conn: Connection, project_id: int, template_id: int, limit: int = 5
                      ) -> list[dict[str, Any]]:
    """The template's newest hits: session, trace, message and event time."""
    h = m.template_hits.c
    rows = conn.execute(select(h.session_id, h.trace_id, h.message, h.event_ns).where(
        h.project_id == project_id, h.template_id == template_id).order_by(h.event_ns.desc(), h.id.desc())
        .limit(limit))
    return [{"session_id": r.session_id, "trace_id": r.trace_id, "message": r.message, "event_ns": int(r.event_ns)}
            for r in rows]
