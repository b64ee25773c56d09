"""New failure clusters: templates mined from failures, and the checks on their counts (methods.md §4).

At each tick the monitor feeds the miner, in event-time order, the failure
messages of the tick's interval: failed tool spans (``tool_error``), other
failed spans (``span_error``), failed guardrail spans (``guardrail``) and
the reasons of failing scores of evaluators whose reasons name a failure
(``evaluator``: by default rule and Python evaluators, ``reason_kinds``).
A faithfulness score's reason is a count of supported claims, and a judge's
is its opinion: they explain a score, whose drop drift already watches, so
mining them would repeat the drift alert. Of a mined reason, the first
clause that is not a tally is the message ("3/4 claims supported" never is). Each occurrence is a
row of ``template_hits``; each template a row of ``failure_templates`` with
its first-seen time, so the miner is rebuilt from the table after a restart.

A template first seen within ``novelty`` (1 day) whose last-hour weighted
count reaches ``min_count`` in ``min_sessions`` sessions of ``min_users``
users fires ``new_cluster`` (rule ``novel``). A template seen during the
service's warm-up is part of the initial baseline and never novel. A known
template surges (rule ``surge``) when its last-hour count is improbable
under its 7-day baseline rate: P(X >= c | (c_b + 0.5) / T_b) < ``surge_p``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, or_, select, update

from agentwatch.alert.types import MAX_EXAMPLES, Candidate
from agentwatch.evaluate.catalogue import EXTERNAL_PREFIX
from agentwatch.monitor.config import ClusterConfig
from agentwatch.monitor.drain import Drain
from agentwatch.monitor.stats import poisson_sf
from agentwatch.store import models as m
from agentwatch.store.models import utcnow
from agentwatch.store.rollups import SESSION_DIMENSION, totals

_NS = 1_000_000_000
#: Novel for this long after it is first seen (then it is a known template that can surge).
NOVELTY_NS = 86400 * _NS
_SPACE = re.compile(r"\s+")
#: Where a reason's clause ends: a semicolon or a line break.
_LEAD = re.compile(r"\s*(?:;|\n)\s*")
#: A clause that is a tally, not a failure: it starts with a count or a ratio ("3/4 claims supported",
#: "2 of 5 steps done", "3 failed tool call(s)").
_TALLY = re.compile(r"^[\d.,]+(?:\s*(?:/|of|out of)\s*[\d.,]+)?(?:\s|%|$)", re.IGNORECASE)
#: Prefix-tree depth: the source and subject take two levels, so the message's first token routes too.
DEPTH = 5
#: Longest message mined (error texts can be long; their head carries the template).
_MAX_MESSAGE = 400


@dataclass(frozen=True)
class Occurrence:
    event_ns: int
    source: str
    subject: str
    message: str
    session_id: str
    trace_id: str | None
    user_id: str | None
    service: str | None
    weight: float
    order: str


def _prefix(source: str, subject: str) -> str:
    """One token standing for the source and subject: letters only, so masks and splitting never touch it
    and subjects that differ only in digits (search_v1, search_v2) stay apart."""
    digest = hashlib.sha256(f"{source}\x1f{subject}".encode()).digest()[:12]
    return "s" + "".join(chr(ord("a") + b % 26) for b in digest)


def lead(reason: str) -> str | None:
    """The clause of an evaluator's reason that names what failed: its first clause that is not a tally,
    without the list of every further instance. None when every clause is a count (nothing to mine)."""
    for clause in _LEAD.split(reason.strip()):
        clause = clause.strip()
        if clause and not _TALLY.match(clause):
            return clause
    return None


@dataclass(frozen=True)
class ReasonSources:
    """The evaluators whose failing scores' reasons are mined (``alerts.clusters.reason_kinds``)."""

    evaluators: frozenset[str] = frozenset()
    #: Scores sent over OTLP by the agent's own evaluators (``external:`` names, declared or not).
    external: bool = False

    @classmethod
    def of(cls, specs: Any, kinds: tuple[str, ...]) -> ReasonSources:
        return cls(frozenset(s.name for s in specs if s.kind in kinds), "external" in kinds)


def first_trace(project_id: Any, session_id: Any) -> Any:
    """A correlated scalar subquery: the session's first trace id."""
    ts = m.trace_sessions.c
    return (select(func.min(ts.trace_id)).where(ts.project_id == project_id, ts.session_id == session_id)
            .scalar_subquery())


def occurrences(conn: Connection, project_id: int, since_ns: int, until_ns: int,
                reasons: ReasonSources | None = None) -> list[Occurrence]:
    """The failures of [since, until) in a fixed order (event time, then identity): failed spans, and the
    failing scores of the evaluators ``reasons`` names (every evaluator when it is None) whose reason
    names a failure."""
    window = {"b_project": project_id, "b_since": since_ns, "b_until": until_ns}
    rows = conn.execute(_failed_spans_query(), window)
    out: list[Occurrence] = []
    for end_ns, kind, name, tool, message, error_type, session_id, trace_id, span_id, user_id, service in rows:
        text = (message or error_type or "").strip()
        if not text:
            text = "failed without a message"
        if error_type and error_type not in text:
            text = f"{error_type}: {text}"
        source = "tool_error" if kind == "tool" else "guardrail" if kind == "guardrail" else "span_error"
        subject = tool or name if kind == "tool" else name
        out.append(Occurrence(int(end_ns), source, subject or "", text[:_MAX_MESSAGE], session_id, trace_id, user_id,
                              service, 1.0, f"{trace_id}{span_id}"))
    if reasons is not None and not reasons.evaluators and not reasons.external:
        out.sort(key=lambda o: (o.event_ns, o.source, o.order))
        return out
    chosen = None if reasons is None else (tuple(sorted(reasons.evaluators)), reasons.external)
    rows = conn.execute(_failed_scores_query(chosen), window)
    for score_row in rows:
        event_ns, evaluator, reason, session_id, probability, score_id, user_id, service, trace_id = tuple(score_row)
        clause = lead(reason or "failed")
        if clause is None:
            continue  # a count of what passed and failed names no failure: the score's drift is watched
        text = clause[:_MAX_MESSAGE]
        out.append(Occurrence(int(event_ns), "evaluator", evaluator, text, session_id, trace_id, user_id, service,
                              1.0 / max(float(probability), 1e-9), f"score{score_id:020d}"))
    out.sort(key=lambda o: (o.event_ns, o.source, o.order))
    return out


@functools.cache
def _failed_spans_query() -> Any:
    """The failed spans of a window, with their session's user and service (a tool span rarely carries
    the user itself); built once."""
    sp, se = m.spans.c, m.sessions.c
    return (select(sp.end_ns, sp.kind, sp.name, sp.tool_name, sp.status_message, sp.error_type, sp.session_id,
                   sp.trace_id, sp.span_id, func.coalesce(se.user_id, sp.user_id),
                   func.coalesce(se.service, sp.service))
            .select_from(m.spans.outerjoin(m.sessions, (se.project_id == sp.project_id)
                                           & (se.session_id == sp.session_id)))
            .where(sp.project_id == bindparam("b_project"), sp.success.is_(False),
                   sp.end_ns >= bindparam("b_since"), sp.end_ns < bindparam("b_until")))


@functools.cache
def _failed_scores_query(chosen: tuple[tuple[str, ...], bool] | None) -> Any:
    """The failing scores of a window (of the ``chosen`` evaluators, and external ones when asked); built once
    per choice."""
    sc, se = m.scores.c, m.sessions.c
    where = [sc.project_id == bindparam("b_project"), sc.passed.is_(False), sc.shadow.is_(False),
             sc.status == "ok", sc.event_time_ns >= bindparam("b_since"), sc.event_time_ns < bindparam("b_until")]
    if chosen is not None:
        evaluators, external = chosen
        picked: ColumnElement[bool] = sc.evaluator.in_(list(evaluators))
        if external:
            picked = or_(picked, sc.evaluator.startswith(EXTERNAL_PREFIX, autoescape=True))
        where.append(picked)
    return (select(sc.event_time_ns, sc.evaluator, sc.reason, sc.session_id, sc.inclusion_probability, sc.id,
                   se.user_id, se.service, first_trace(sc.project_id, sc.session_id))
            .select_from(m.scores.join(m.sessions, (se.project_id == sc.project_id)
                                       & (se.session_id == sc.session_id)))
            .where(*where))


class Miner:
    """One Drain per project, rebuilt from ``failure_templates`` when first used."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._drains: dict[int, Drain] = {}
        #: Drain cluster id -> failure_templates id, per project.
        self._ids: dict[int, dict[int, int]] = {}

    def _drain(self, conn: Connection, project_id: int) -> Drain:
        drain = self._drains.get(project_id)
        if drain is None:
            t = m.failure_templates.c
            rows = conn.execute(select(t.id, t.source, t.subject, t.template, t.count)
                                .where(t.project_id == project_id).order_by(t.id)).all()
            drain = Drain.restore([(int(r.id), f"{_prefix(r.source, r.subject)} {r.template}", int(r._mapping["count"]))
                                   for r in rows], similarity=self.config.similarity, depth=DEPTH)
            self._drains[project_id] = drain
            self._ids[project_id] = {int(r.id): int(r.id) for r in rows}
        return drain

    def forget(self) -> None:
        """Drop the in-memory miners (after a transaction that wrote templates was rolled back)."""
        self._drains.clear()
        self._ids.clear()

    def mine(self, conn: Connection, project_id: int, since_ns: int, until_ns: int, warm: set[str],
             reasons: ReasonSources | None = None) -> int:
        """Mine the failures of [since, until); answers how many occurrences were recorded."""
        found = occurrences(conn, project_id, since_ns, until_ns, reasons)
        if not found:
            return 0
        drain = self._drain(conn, project_id)
        ids = self._ids[project_id]
        t = m.failure_templates.c
        hits = []
        for occ in found:
            prefix = _prefix(occ.source, occ.subject)
            cluster, change = drain.add(f"{prefix} {occ.message}")
            template = " ".join(cluster.tokens[1:])  # without the source-and-subject token
            if change == "created":
                row_id = conn.execute(insert(m.failure_templates).values(
                    project_id=project_id, source=occ.source, subject=occ.subject, template=template,
                    first_seen_ns=occ.event_ns, last_seen_ns=occ.event_ns, count=0, weighted_count=0.0,
                    baseline=(occ.service or "") not in warm, created_at=utcnow()).returning(t.id)).scalar_one()
                ids[cluster.id] = int(row_id)
            db_id = ids[cluster.id]
            values: dict[str, Any] = {"count": t.count + 1, "weighted_count": t.weighted_count + occ.weight,
                                      "last_seen_ns": func.max(t.last_seen_ns, occ.event_ns)
                                      if conn.dialect.name == "sqlite" else func.greatest(t.last_seen_ns, occ.event_ns)}
            if change == "changed":
                values["template"] = template
            conn.execute(update(m.failure_templates).where(t.id == db_id).values(**values))
            hits.append({"project_id": project_id, "template_id": db_id, "event_ns": occ.event_ns,
                         "session_id": occ.session_id, "trace_id": occ.trace_id, "user_id": occ.user_id,
                         "service": occ.service, "weight": occ.weight, "message": occ.message})
        conn.execute(insert(m.template_hits), hits)
        return len(hits)


def has_young_templates(conn: Connection, project_id: int, tick_ns: int) -> bool:
    """Whether any template outside the baseline was first seen within the novelty period (else no novel check)."""
    t = m.failure_templates.c
    return conn.execute(select(t.id).where(t.project_id == project_id, t.baseline.is_(False),
                                           t.first_seen_ns >= tick_ns - NOVELTY_NS).limit(1)).first() is not None


def check(conn: Connection, project_id: int, tick_ns: int, config: ClusterConfig, warm: set[str], *,
          surges: bool = True) -> list[Candidate]:
    """``new_cluster`` candidates at ``tick_ns`` from the last window's hits (``surges``: known templates too)."""
    h, t = m.template_hits.c, m.failure_templates.c
    window_start = tick_ns - int(config.window_s * _NS)
    rows = conn.execute(
        select(h.template_id, func.count(), func.sum(h.weight), func.count(h.session_id.distinct()),
               func.count(h.user_id.distinct()), h.service)
        .where(h.project_id == project_id, h.event_ns >= window_start, h.event_ns < tick_ns)
        .group_by(h.template_id, h.service).order_by(h.template_id, h.service)).all()
    out: list[Candidate] = []
    for template_id, count, weighted, sessions, users, service in rows:
        if (service or "") not in warm or float(weighted) < config.min_count or sessions < config.min_sessions or (
                users < config.min_users):
            continue
        template = conn.execute(select(t.source, t.subject, t.template, t.first_seen_ns, t.baseline)
                                .where(t.id == template_id)).one()
        novel = not template.baseline and template.first_seen_ns >= tick_ns - NOVELTY_NS
        if not novel and (not surges or count < config.surge_min_count):
            continue
        baseline_start = window_start - int(config.baseline_s * _NS)
        baseline_count = conn.execute(
            select(func.count()).where(h.project_id == project_id, h.template_id == template_id, h.service == service,
                                       h.event_ns >= baseline_start, h.event_ns < window_start)).scalar_one()
        figures: dict[str, Any] = {"observed": float(weighted), "n": int(count), "sessions": int(sessions),
                                   "users": int(users), "baseline": int(baseline_count),
                                   "template_id": int(template_id),
                                   "template": template.template, "source": template.source,
                                   "first_seen_ns": int(template.first_seen_ns)}
        if novel:
            rule = "novel"
            summary = (f"new failure in {template.subject} ({template.source}): \"{template.template}\" "
                       f"{count} times in {sessions} sessions over the last {config.window_s / 3600:g}h")
        else:
            # The baseline rate over the time the template has existed (a template split off a more general
            # one recently has few hits of its own), and only once it has existed for a warm-up.
            known_since = max(baseline_start, int(template.first_seen_ns))
            if window_start - known_since < int(config.warmup_s * _NS):
                continue
            # Expected in proportion to traffic, not to time, so the daily cycle's peak is no surge.
            labels = {"service": service} if service else {}
            window_sessions = totals(conn, project_id, SESSION_DIMENSION, since_ns=window_start, until_ns=tick_ns,
                                     **labels).count
            baseline_sessions = totals(conn, project_id, SESSION_DIMENSION, since_ns=known_since,
                                       until_ns=window_start, **labels).count
            if not baseline_sessions:
                continue
            expected = (baseline_count + 0.5) * window_sessions / baseline_sessions
            p = poisson_sf(int(count), expected)
            if p >= config.surge_p or count < config.surge_min_count:
                continue
            rule = "surge"
            figures.update({"expected": round(expected, 4), "p_value": p})
            summary = (f"failure surging in {template.subject} ({template.source}): \"{template.template}\" "
                       f"{count} times over the last {config.window_s / 3600:g}h, {expected:.2f} expected at this "
                       "traffic")
        examples = conn.execute(
            select(h.session_id, h.trace_id).where(h.project_id == project_id, h.template_id == template_id,
                                                   h.service == service, h.event_ns >= window_start,
                                                   h.event_ns < tick_ns)
            .order_by(h.event_ns, h.id).limit(200)).all()
        session_ids = list(dict.fromkeys(r.session_id for r in examples))[:MAX_EXAMPLES]
        trace_ids = list(dict.fromkeys(r.trace_id for r in examples if r.trace_id))[:MAX_EXAMPLES]
        out.append(Candidate(
            kind="new_cluster", rule=rule, severity="ticket", summary=summary,
            dimension=f"{template.source}:{template.subject}",
            evaluator=template.subject if template.source == "evaluator" else "",
            labels={"service": service or ""}, figures=figures, session_ids=session_ids, trace_ids=trace_ids,
            discriminator=str(template_id)))
    return out


def list_templates(conn: Connection, project_id: int, *, limit: int, cursor: int | None,
                   now_ns: int | None, window_s: float = 3600.0) -> tuple[list[dict[str, Any]], int | None]:
    """Templates newest first (by first-seen, id) with their counts, for ``GET /api/v1/clusters``."""
    t, h = m.failure_templates.c, m.template_hits.c
    query = select(t.id, t.source, t.subject, t.template, t.first_seen_ns, t.last_seen_ns, t.count,
                   t.weighted_count, t.baseline).where(t.project_id == project_id)
    if cursor is not None:
        query = query.where(t.id < cursor)
    rows = conn.execute(query.order_by(t.id.desc()).limit(limit + 1)).all()
    items = []
    for row in rows[:limit]:
        recent = None
        if now_ns is not None:
            recent = conn.execute(select(func.count()).where(
                h.project_id == project_id, h.template_id == row.id,
                h.event_ns >= now_ns - int(window_s * _NS), h.event_ns < now_ns)).scalar_one()
        example = conn.execute(select(h.session_id, h.message).where(h.project_id == project_id,
                                                                     h.template_id == row.id)
                               .order_by(h.event_ns.desc(), h.id.desc()).limit(1)).first()
        items.append({"id": int(row.id), "source": row.source, "subject": row.subject, "template": row.template,
                      "first_seen_ns": int(row.first_seen_ns), "last_seen_ns": int(row.last_seen_ns),
                      "count": int(row._mapping["count"]), "weighted_count": float(row.weighted_count),
                      "count_last_hour": recent, "baseline": bool(row.baseline),
                      "example": {"session_id": example.session_id, "message": example.message} if example else None})
    next_cursor = int(rows[limit - 1].id) if len(rows) > limit else None
    return items, next_cursor
