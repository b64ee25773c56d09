"""The schema: one set of SQLAlchemy Core tables for SQLite and PostgreSQL.

Event times (span and session start/end) are integer Unix nanoseconds, which
are UTC by definition; wall-clock times are timezone-aware UTC timestamps.
The original attributes of every span are kept whole in ``span_payloads``;
the columns of ``spans`` are what queries filter and aggregate on. The full
normalized span is rebuilt from them on read.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData()

#: JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")
#: Autoincrement keys: INTEGER PRIMARY KEY is SQLite's rowid, BIGINT elsewhere.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored and returned in UTC, whatever the engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


projects = Table(
    "projects",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, ForeignKey("projects.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

resources = Table(
    "resources",
    metadata,
    Column("key", String(16), primary_key=True),
    Column("attributes", JSONType, nullable=False),
)

spans = Table(
    "spans",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16)),
    Column("session_id", Text, nullable=False),
    #: True when the span itself carried the session id (not inherited).
    Column("session_explicit", Boolean, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("span_kind", SmallInteger, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status_code", SmallInteger, nullable=False),
    Column("status_message", Text),
    Column("success", Boolean, nullable=False),
    Column("error_type", Text),
    Column("service", Text),
    Column("agent_name", Text),
    Column("agent_version", Text),
    Column("intent", Text),
    Column("user_id", Text),
    Column("provider", Text),
    Column("model", Text),
    Column("tool_name", Text),
    Column("tokens_in", BigInteger),
    Column("tokens_out", BigInteger),
    Column("cost_usd", Float),
    Column("scope_name", Text),
    Column("scope_version", Text),
    Column("resource_key", String(16)),
)
Index("ix_spans_session", spans.c.project_id, spans.c.session_id)
#: Spans that name a user (erasure finds a user's sessions through them too); most spans name none.
Index("ix_spans_user", spans.c.project_id, spans.c.user_id,
      sqlite_where=spans.c.user_id.isnot(None), postgresql_where=spans.c.user_id.isnot(None))
#: Failed spans by event time: what the failure-template miner reads at each check.
Index("ix_spans_failures", spans.c.project_id, spans.c.end_ns,
      sqlite_where=spans.c.success.is_(False), postgresql_where=spans.c.success.is_(False))

#: The payload of each span (its original attributes, events and links), apart from the span's row so that
#: retention deletes it whole and the space it held is reused (see agentwatch.store.retention).
span_payloads = Table(
    "span_payloads",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("attributes", JSONType, nullable=False),
    Column("events", JSONType),
    Column("links", JSONType),
)

#: Which session each trace's spans without a session id of their own belong to.
trace_sessions = Table(
    "trace_sessions",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("session_id", Text, nullable=False),
    #: False while no span of the trace has named a session (the trace id stands in).
    Column("explicit", Boolean, nullable=False),
)
#: A session's traces (the monitor names them in alerts); trace_id in it so the lookup reads the index only.
Index("ix_trace_sessions_session", trace_sessions.c.project_id, trace_sessions.c.session_id,
      trace_sessions.c.trace_id)

sessions = Table(
    "sessions",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("service", Text),
    Column("agent_name", Text),
    Column("agent_version", Text),
    Column("intent", Text),
    Column("user_id", Text),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("spans", Integer, nullable=False),
    Column("turns", Integer, nullable=False),
    Column("llm_calls", Integer, nullable=False),
    Column("tool_calls", Integer, nullable=False),
    Column("tool_errors", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
    #: Tokens of agent/chain spans, used only when the session has no llm span.
    Column("agent_tokens_in", BigInteger, nullable=False),
    Column("agent_tokens_out", BigInteger, nullable=False),
    Column("usage_spans", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    #: Summed durations of the session's model, tool, retrieval and embedding spans.
    Column("work_ms", Float, nullable=False, server_default="0"),
    Column("complete", Boolean, nullable=False),
    Column("completed_at", UtcDateTime()),
    Column("flagged", Boolean, nullable=False),
    Column("sampled", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    #: When the evaluation job of the completed session finished.
    Column("evaluated_at", UtcDateTime()),
    #: When retention dropped the span payloads (attributes, events, log records).
    Column("payload_dropped_at", UtcDateTime()),
)
Index("ix_sessions_start", sessions.c.project_id, sessions.c.start_ns)
#: A user's sessions, newest first: the API's user_id filter and erasure.
Index("ix_sessions_user", sessions.c.project_id, sessions.c.user_id, sessions.c.start_ns)
Index("ix_sessions_open", sessions.c.project_id, sessions.c.complete, sessions.c.end_ns)
#: Flagged sessions in the order they were flagged (the review queue's oldest unreviewed one).
Index("ix_sessions_flagged", sessions.c.project_id, sessions.c.evaluated_at,
      sqlite_where=sessions.c.flagged, postgresql_where=sessions.c.flagged)

#: OTLP log records that name a span (evaluations, inference details, legacy
#: message events). Kept apart so they attach whether they come before or after
#: their span.
span_events = Table(
    "span_events",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("event_name", Text, nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("severity_number", SmallInteger, nullable=False),
    Column("attributes", JSONType, nullable=False),
    Column("body", JSONType),
    Column("scope_name", Text),
    Column("resource_key", String(16)),
)
Index("ix_span_events_span", span_events.c.project_id, span_events.c.trace_id, span_events.c.span_id)

#: The event-time clock of each project.
watermarks = Table(
    "watermarks",
    metadata,
    Column("project_id", IdType, primary_key=True),
    #: Largest event time (span end) seen.
    Column("max_event_ns", BigInteger, nullable=False),
    #: The watermark: sessions that ended idle_timeout before it are complete.
    Column("watermark_ns", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

#: Every version of every evaluator ever configured.
evaluators = Table(
    "evaluators",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    #: The definition that produced the version (kind, params, prompt, model, source hash...).
    Column("spec", JSONType, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    #: When a score of this version was first written.
    Column("first_used_at", UtcDateTime()),
    #: The latest calibration run of this version: {run_id, dataset, dataset_version, n, accuracy, kappa, ...}.
    Column("calibration", JSONType),
)

scores = Table(
    "scores",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("session_id", Text, nullable=False),
    #: Empty for a score of the whole session.
    Column("span_id", String(16), nullable=False),
    Column("evaluator", Text, nullable=False),
    Column("evaluator_version", String(32), nullable=False),
    Column("status", String(8), nullable=False),
    Column("score", Float),
    Column("passed", Boolean),
    Column("threshold", Float),
    Column("direction", String(20), nullable=False),
    Column("reason", Text),
    Column("error", Text),
    #: What the evaluator said when it could not be used (a judge's raw text).
    Column("raw", Text),
    Column("judge_model", Text),
    Column("prompt_hash", String(64)),
    Column("dataset_version", Text),
    Column("inclusion_probability", Float, nullable=False),
    Column("latency_ms", Float),
    Column("cost_usd", Float),
    Column("tokens_in", BigInteger),
    Column("tokens_out", BigInteger),
    #: The scored session's end time (event time), kept by backfills and shadow scores.
    Column("event_time_ns", BigInteger, nullable=False),
    #: Written by shadow scoring of a new version over the baseline window.
    Column("shadow", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ux_scores", scores.c.project_id, scores.c.session_id, scores.c.span_id, scores.c.evaluator,
      scores.c.evaluator_version, unique=True)
Index("ix_scores_time", scores.c.project_id, scores.c.event_time_ns)
Index("ix_scores_evaluator", scores.c.project_id, scores.c.evaluator, scores.c.evaluator_version,
      scores.c.event_time_ns)

#: Durable evaluation queue: one job per completed session (and per backfill request).
eval_jobs = Table(
    "eval_jobs",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("session_id", Text, nullable=False),
    #: complete | backfill | shadow
    Column("reason", String(16), nullable=False),
    #: Restrict the job to these evaluator names (null: every current evaluator).
    Column("evaluators", JSONType),
    #: queued | running
    Column("state", String(8), nullable=False),
    #: A running job whose lease passed is taken again (its worker died).
    Column("lease_until", UtcDateTime()),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_eval_jobs_state", eval_jobs.c.state, eval_jobs.c.id)
#: A completed session is queued once; backfill and shadow jobs may repeat.
Index("ux_eval_jobs_session", eval_jobs.c.project_id, eval_jobs.c.session_id, unique=True,
      sqlite_where=eval_jobs.c.reason == "complete", postgresql_where=eval_jobs.c.reason == "complete")

#: Per-minute event-time buckets of each series (see agentwatch.store.rollups).
rollups = Table(
    "rollups",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("minute_ns", BigInteger, primary_key=True),
    Column("service", Text, primary_key=True),
    Column("agent_version", Text, primary_key=True),
    Column("intent", Text, primary_key=True),
    #: An evaluator's name, or _session for the sessions themselves.
    Column("dimension", Text, primary_key=True),
    #: Empty for _session buckets.
    Column("evaluator_version", String(32), primary_key=True),
    Column("count", Float, nullable=False),
    Column("weighted_count", Float, nullable=False),
    Column("weighted_sum", Float, nullable=False),
    Column("weighted_sum_sq", Float, nullable=False),
    Column("failures", Float, nullable=False),
    Column("weighted_failures", Float, nullable=False),
    Column("errors", Float, nullable=False),
    #: DDSketch protobufs of session latency (ms) and cost (USD), _session buckets only.
    Column("latency_sketch", LargeBinary),
    Column("cost_sketch", LargeBinary),
)
Index("ix_rollups_dimension", rollups.c.project_id, rollups.c.dimension, rollups.c.minute_ns)

#: The same buckets summed by event-time hour (``minute_ns`` holds the hour's start), so that
#: windows of hours and days read a bucket per hour.
rollups_hourly = Table(
    "rollups_hourly",
    metadata,
    *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in rollups.columns),
)
Index("ix_rollups_hourly_dimension", rollups_hourly.c.project_id, rollups_hourly.c.dimension,
      rollups_hourly.c.minute_ns)

#: Human verdicts on an evaluator's score of a session (judge calibration).
labels = Table(
    "labels",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("evaluator", Text, nullable=False),
    #: The version whose score was labelled (the session's latest score of that evaluator), if any.
    Column("evaluator_version", String(32)),
    #: correct | real_failure | false_positive | false_negative | edge_case
    Column("verdict", String(16), nullable=False),
    Column("expected_score", Float),
    Column("note", Text),
    Column("author", Text),
    #: The labelled session's end: a label's event time.
    Column("event_time_ns", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_labels_evaluator", labels.c.project_id, labels.c.evaluator, labels.c.event_time_ns)
Index("ix_labels_session", labels.c.project_id, labels.c.session_id)


#: The monitor's progress per project: the last event-time tick checked and the detectors' state.
monitor_state = Table(
    "monitor_state",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("last_tick_ns", BigInteger, nullable=False),
    #: CUSUM sums, hold counters, service first-seen times (JSON, see agentwatch.monitor.checker).
    Column("state", JSONType, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

#: Failure templates mined from error messages and evaluator reasons (agentwatch.monitor.drain).
failure_templates = Table(
    "failure_templates",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    #: tool_error | span_error | guardrail | evaluator
    Column("source", String(16), nullable=False),
    #: The tool, span name or evaluator the messages came from.
    Column("subject", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("first_seen_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("weighted_count", Float, nullable=False),
    #: Mined during the service's warm-up: part of the initial baseline.
    Column("baseline", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_failure_templates_project", failure_templates.c.project_id, failure_templates.c.first_seen_ns)

#: One row per mined occurrence, for windowed counts and the sessions that show a template.
template_hits = Table(
    "template_hits",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("template_id", IdType, nullable=False),
    Column("event_ns", BigInteger, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("trace_id", String(32)),
    Column("user_id", Text),
    Column("service", Text),
    Column("weight", Float, nullable=False),
    Column("message", Text, nullable=False),
)
Index("ix_template_hits_time", template_hits.c.project_id, template_hits.c.event_ns)
Index("ix_template_hits_template", template_hits.c.project_id, template_hits.c.template_id,
      template_hits.c.event_ns)

#: Alerts: one row per firing episode of a dedup key (see agentwatch.alert).
alerts = Table(
    "alerts",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("dedup_key", Text, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("rule", Text, nullable=False),
    Column("dimension", Text, nullable=False),
    Column("evaluator", Text, nullable=False),
    Column("evaluator_version", String(32), nullable=False),
    #: page | ticket
    Column("severity", String(8), nullable=False),
    #: firing | resolved
    Column("state", String(8), nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("resolved_ns", BigInteger),
    Column("detected_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("summary", Text, nullable=False),
    Column("labels", JSONType, nullable=False),
    Column("figures", JSONType, nullable=False),
    Column("session_ids", JSONType, nullable=False),
    Column("trace_ids", JSONType, nullable=False),
    Column("owner", Text),
    Column("acknowledged_at", UtcDateTime()),
    Column("acknowledged_by", Text),
    Column("silenced_until", UtcDateTime()),
    #: Wall time of the last notification sent for it (repeat interval).
    Column("notified_at", UtcDateTime()),
)
Index("ix_alerts_state", alerts.c.project_id, alerts.c.state, alerts.c.started_ns)
Index("ix_alerts_key", alerts.c.project_id, alerts.c.dedup_key, alerts.c.state)

#: Time-bounded silences: alerts whose fields match every matcher are not notified.
silences = Table(
    "silences",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    #: {kind?, evaluator?, rule?, severity?, labels?: {service?, agent_version?, intent?}}
    Column("matchers", JSONType, nullable=False),
    Column("author", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)
Index("ix_silences_project", silences.c.project_id, silences.c.expires_at)

#: Durable outbox of notifications: a notifier that fails is retried from here and never blocks checks.
notifications = Table(
    "notifications",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("alert_id", IdType, nullable=False),
    #: The notifier's name in the routes config.
    Column("notifier", Text, nullable=False),
    #: trigger | resolve | repeat
    Column("event", String(8), nullable=False),
    #: pending | sent | failed (gave up)
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
)
Index("ix_notifications_due", notifications.c.state, notifications.c.next_attempt_at)


#: Named datasets of labelled cases (agentwatch.feedback.datasets); ``floors`` are the gate's pass-rate floors.
datasets = Table(
    "datasets",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("floors", JSONType, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ux_datasets_name", datasets.c.project_id, datasets.c.name, unique=True)

#: Immutable versions: a version is its list of cases (``dataset_members``) and the evaluator versions it pins.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("dataset_id", IdType, nullable=False),
    Column("version", Integer, nullable=False),
    Column("case_count", Integer, nullable=False),
    #: sha256 over the members' digests and the pins: a read checks it.
    Column("digest", String(64), nullable=False),
    #: {evaluator: {version, kind, rule?, function?, params, threshold, direction}}
    Column("pins", JSONType, nullable=False),
    Column("author", Text),
    Column("note", Text),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ux_dataset_versions", dataset_versions.c.dataset_id, dataset_versions.c.version, unique=True)

#: A case: a snapshot of a session with its expected verdicts, written once.
dataset_cases = Table(
    "dataset_cases",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("dataset_id", IdType, nullable=False),
    Column("case_id", Text, nullable=False),
    #: sha256 of the canonical JSON of ``content``.
    Column("digest", String(64), nullable=False),
    Column("content", JSONType, nullable=False),
    Column("source_session_id", Text),
    #: Kept for erasure.
    Column("source_user_id", Text),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ux_dataset_cases_digest", dataset_cases.c.dataset_id, dataset_cases.c.digest, unique=True)
Index("ix_dataset_cases_source", dataset_cases.c.source_session_id)

dataset_members = Table(
    "dataset_members",
    metadata,
    Column("version_id", IdType, primary_key=True),
    Column("case_row_id", IdType, primary_key=True),
)

#: Agreement of an evaluator version with labels: of a dataset version, or of production labels.
calibration_runs = Table(
    "calibration_runs",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("evaluator", Text, nullable=False),
    Column("evaluator_version", String(32), nullable=False),
    #: dataset | labels
    Column("source", String(16), nullable=False),
    Column("dataset", Text),
    Column("dataset_version", Integer),
    Column("n", Integer, nullable=False),
    Column("metrics", JSONType, nullable=False),
    Column("disagreements", JSONType, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index("ix_calibration_runs_evaluator", calibration_runs.c.project_id, calibration_runs.c.evaluator,
      calibration_runs.c.evaluator_version, calibration_runs.c.id)
