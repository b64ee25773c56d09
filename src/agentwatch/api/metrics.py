"""``GET /metrics``: the server's own figures in the Prometheus text format.

Counters and gauges are read from the running parts when scraped (a
collector, not global metric objects), so nothing is counted twice and
nothing here touches the ingest hot path. No label ever carries a key,
a session id or user text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agentwatch.alert import store as alert_store
from agentwatch.store import evaluations

if TYPE_CHECKING:
    from agentwatch.pipeline import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PipelineCollector:
    """Reads the figures of one pipeline at scrape time."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        receiver, writer, budget = p.receiver, p.writer, p.budget
        worker, scorer = p.evaluation_counts
        yield CounterMetricFamily("agentwatch_ingest_spans_accepted", "Spans committed.", receiver.spans_accepted)
        yield CounterMetricFamily("agentwatch_ingest_spans_rejected", "Spans refused (partial success).",
                                  receiver.spans_rejected)
        yield CounterMetricFamily("agentwatch_ingest_overloaded_requests",
                                  "Requests answered 429 for a full in-flight budget or memory limit.",
                                  budget.rejected)
        yield GaugeMetricFamily("agentwatch_ingest_inflight_bytes", "Bytes of requests not yet committed.",
                                budget.in_flight)
        yield GaugeMetricFamily("agentwatch_ingest_inflight_limit_bytes", "The in-flight budget.", budget.max_bytes)
        yield CounterMetricFamily("agentwatch_writer_commits", "Group commits of the writer.", writer.commits)
        watermark = GaugeMetricFamily("agentwatch_watermark_seconds", "Event-time watermark per project.",
                                      labels=["project_id"])
        for project_id, clock in sorted(p.sessions.clocks.items()):
            watermark.add_metric([str(project_id)], clock.watermark_ns / 1e9)
        yield watermark
        yield CounterMetricFamily("agentwatch_evaluations_done", "Evaluation jobs finished.", worker.done)
        yield CounterMetricFamily("agentwatch_evaluations_failed", "Evaluation jobs that failed and wait for a retry.",
                                  worker.failed)
        yield CounterMetricFamily("agentwatch_evaluations_postponed",
                                  "Evaluation jobs put off because a judge was down.", worker.postponed)
        yield CounterMetricFamily("agentwatch_evaluator_errors", "Evaluations that ended in an error.",
                                  scorer.errors)
        yield GaugeMetricFamily("agentwatch_evaluations_queued", "Evaluation jobs in the queue.",
                                evaluations.pending(p.store.engine))
        outcomes = CounterMetricFamily("agentwatch_scores", "Scores written, by evaluator and outcome.",
                                       labels=["evaluator", "outcome"])
        for (name, outcome), count in sorted(scorer.outcomes.items()):
            outcomes.add_metric([name, outcome], count)
        yield outcomes
        yield from self._monitor()
        yield from self._review()
        if p.memory is not None:
            yield GaugeMetricFamily("agentwatch_memory_limit_bytes", "ingest.memory_limit_mb in bytes.",
                                    p.memory.limit_bytes)


    def _monitor(self) -> Iterator[Metric]:
        """SLOs of the default project, alert states and the notification outbox."""
        p = self.pipeline
        labels = ["slo", "layer", "service", "agent_version", "intent"]
        value = GaugeMetricFamily("agentwatch_slo_value", "Good share of each SLO over its period.", labels=labels)
        target = GaugeMetricFamily("agentwatch_slo_target", "Target good share of each SLO.", labels=labels)
        budget = GaugeMetricFamily("agentwatch_slo_error_budget_remaining",
                                   "Share of each SLO's error budget left (negative when overspent).", labels=labels)
        burn = GaugeMetricFamily("agentwatch_slo_burn_rate", "Burn rate of each SLO over each alert window.",
                                 labels=[*labels, "window"])
        for entry in p.monitor.slo_status(p.default_project_id):
            names = [entry["name"], entry["layer"], *(str((entry.get("labels") or {}).get(k) or "")
                                                       for k in ("service", "agent_version", "intent"))]
            if entry.get("value") is not None:
                value.add_metric(names, float(entry["value"]))
            target.add_metric(names, float(entry["target"]))
            if entry.get("error_budget_left") is not None:
                budget.add_metric(names, float(entry["error_budget_left"]))
            for window, rate in sorted((entry.get("burn_rates") or {}).items()):
                if rate is not None:
                    burn.add_metric([*names, window], float(rate))
        yield from (value, target, budget, burn)
        firing = GaugeMetricFamily("agentwatch_alerts_firing", "Firing alerts by kind and severity.",
                                   labels=["kind", "severity"])
        for (kind, severity), count in sorted(alert_store.firing_counts(p.store.engine).items()):
            firing.add_metric([kind, severity], count)
        yield firing
        yield GaugeMetricFamily("agentwatch_notifications_pending", "Notifications waiting in the outbox.",
                                p.dispatcher.pending())


    def _review(self) -> Iterator[Metric]:
        """The age of the oldest flagged session no one has labelled (an SLO: reviewed within 24h)."""
        from agentwatch.feedback.review import oldest_unreviewed
        from agentwatch.store.models import utcnow

        p = self.pipeline
        with p.store.engine.connect() as conn:
            oldest = oldest_unreviewed(conn, p.default_project_id)
        age = (utcnow() - oldest[1]).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("agentwatch_review_oldest_unreviewed_seconds",
                                "Wall-clock age of the oldest flagged session without a label (0: none).", age)


def render(pipeline: Pipeline) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline))
    registry.register(pipeline.dispatcher)
    return generate_latest(registry)
