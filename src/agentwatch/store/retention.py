"""Tail retention on event time: keep what matters at full fidelity, the rest briefly.

``retention: {payload_ttl: 1h, sampled: 14d, flagged: 30d}``: once a
session is complete and evaluated, the span payloads (attributes, span
events, links and the log records attached to its spans) of a session that
is neither sampled nor flagged are dropped ``payload_ttl`` after it
completed; a sampled session keeps them for ``sampled``, a flagged one for
``flagged`` (the longer of the two when both), then loses them the same way.
Session rows, span rows with their columns, scores and rollups stay. Time is
the project's watermark, so replayed traffic ages exactly as live traffic.
Payloads live in ``span_payloads``, apart from the spans' rows, and are
deleted whole: the space they held is reused, so the store stays bounded by
what is retained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, and_, delete, or_, select, tuple_, update

from agentwatch.errors import ConfigError
from agentwatch.settings import Section
from agentwatch.store import models as m
from agentwatch.store.models import utcnow

_NS = 1_000_000_000
#: Sessions stripped per statement batch.
BATCH = 500


@dataclass(frozen=True)
class RetentionPolicy:
    payload_ttl_s: float = 3600.0
    sampled_s: float = 14 * 86400.0
    flagged_s: float = 30 * 86400.0

    @classmethod
    def from_section(cls, section: Any, where: str = "agentwatch.yaml") -> RetentionPolicy:
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}, key retention: expected a mapping of payload_ttl, sampled, flagged")
        fields = {"payload_ttl": "payload_ttl_s", "sampled": "sampled_s", "flagged": "flagged_s"}
        read = Section(where, section, "retention").only(fields)
        return cls(**{fields[key]: read.duration(key, 0.0) for key in section})


def apply(conn: Connection, project_id: int, watermark_ns: int, idle_timeout_ns: int,
          policy: RetentionPolicy) -> int:
    """Drop the payloads that are due; answers how many sessions lost theirs."""
    s = m.sessions.c
    # A session completed at end + idle timeout; its periods count from then.
    completed_by = watermark_ns - idle_timeout_ns

    def older_than(seconds: float) -> Any:
        return s.end_ns <= completed_by - int(seconds * _NS)

    due = or_(
        and_(s.flagged.is_(False), s.sampled.is_(False), older_than(policy.payload_ttl_s)),
        and_(s.flagged.is_(True), s.sampled.is_(False), older_than(policy.flagged_s)),
        and_(s.sampled.is_(True), s.flagged.is_(False), older_than(policy.sampled_s)),
        and_(s.sampled.is_(True), s.flagged.is_(True), older_than(max(policy.sampled_s, policy.flagged_s))),
    )
    session_ids = [row[0] for row in conn.execute(
        select(s.session_id).where(s.project_id == project_id, s.complete.is_(True), s.evaluated_at.is_not(None),
                                   s.payload_dropped_at.is_(None), due).limit(BATCH))]
    if not session_ids:
        return 0
    sp, ev, pl = m.spans.c, m.span_events.c, m.span_payloads.c
    traces = select(sp.trace_id).where(sp.project_id == project_id, sp.session_id.in_(session_ids)).distinct()
    conn.execute(delete(m.span_events).where(ev.project_id == project_id, ev.trace_id.in_(traces)))
    # Whole payload rows go: their pages are freed and reused by the payloads that come next.
    keys = select(sp.project_id, sp.trace_id, sp.span_id).where(sp.project_id == project_id,
                                                                sp.session_id.in_(session_ids))
    conn.execute(delete(m.span_payloads).where(tuple_(pl.project_id, pl.trace_id, pl.span_id).in_(keys)))
    conn.execute(update(m.sessions).where(s.project_id == project_id, s.session_id.in_(session_ids))
                 .values(payload_dropped_at=utcnow()))
    return len(session_ids)
