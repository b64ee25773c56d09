"""What an alert is: the conditions every check produces and the Alert object the API and notifiers carry.

A check of the monitor runs at an event-time tick and answers :class:`Candidate`
objects: the alert conditions that hold at that tick. The alert store
(:mod:`agentwatch.alert.store`) turns them into alerts: a candidate whose
dedup key has no firing alert opens one (``started_at`` = the tick), one that
keeps holding updates it, and a firing alert of a rule that was checked but
no longer holds is resolved at the tick. :func:`alert_dict` is the Alert object
of the HTTP contract, which notifications carry unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from agentwatch.timefmt import rfc3339

KINDS = ("drift", "new_cluster", "rare_event", "burn_rate", "calibration", "no_data", "evaluator_errors")
SEVERITIES = ("page", "ticket")
#: The labels every alert carries (empty string: not narrowed by it).
LABEL_NAMES = ("service", "agent_version", "intent")
#: Most session and trace ids an alert keeps.
MAX_EXAMPLES = 20


@dataclass
class Candidate:
    """An alert condition holding at one tick."""

    kind: str
    rule: str
    severity: str
    summary: str
    dimension: str = ""
    evaluator: str = ""
    evaluator_version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    session_ids: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    owner: str | None = None
    #: Event time the condition began to hold, when earlier than the tick (a label's event time).
    started_ns: int | None = None
    #: Extra identity beyond kind, rule, dimension, version and labels (a template id).
    discriminator: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        self.labels = {name: str(self.labels.get(name) or "") for name in LABEL_NAMES}

    @property
    def dedup_key(self) -> str:
        """Stable across ticks and replays: no times, no figures."""
        parts = [self.kind, self.rule, self.dimension, self.evaluator_version,
                 *(self.labels[name] for name in LABEL_NAMES), self.discriminator]
        readable = ":".join(p for p in (self.kind, self.rule, self.dimension) if p)
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
        return f"{readable}:{digest}"

#: Base of alert links when no ``public_url`` is configured.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:4318"


def alert_dict(row: Mapping[str, Any], public_url: str | None) -> dict[str, Any]:
    """The Alert object of the HTTP contract (plus its ``dedup_key``) from an ``alerts`` row."""
    base = (public_url or DEFAULT_PUBLIC_URL).rstrip("/")
    alert_id = int(row["id"])
    return {
        "id": alert_id,
        "kind": row["kind"],
        "rule": row["rule"],
        "dimension": row["dimension"],
        "evaluator": row["evaluator"],
        "evaluator_version": row["evaluator_version"],
        "severity": row["severity"],
        "state": row["state"],
        "started_at": rfc3339(row["started_ns"]),
        "detected_at": rfc3339(row["detected_at"]),
        "resolved_at": rfc3339(row["resolved_ns"]),
        "summary": row["summary"],
        "labels": {name: (row["labels"] or {}).get(name, "") for name in LABEL_NAMES},
        "figures": dict(row["figures"] or {}),
        "session_ids": list(row["session_ids"] or []),
        "trace_ids": list(row["trace_ids"] or []),
        "link": f"{base}/api/v1/alerts/{alert_id}",
        "owner": row["owner"],
        "acknowledged_at": rfc3339(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "silenced_until": rfc3339(row["silenced_until"]),
        "dedup_key": row["dedup_key"],
    }


def silence_dict(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "matchers": row["matchers"],
        "author": row["author"],
        "comment": row["comment"],
        "created_at": rfc3339(row["created_at"]),
        "expires_at": rfc3339(row["expires_at"]),
        "active": row["expires_at"] > now,
    }
