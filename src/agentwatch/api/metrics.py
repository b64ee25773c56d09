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
        receiver, writer, worker, budget = p.receiver, p.writer, p.worker, p.budget
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
        for project_id, clock in sorted(writer.clocks.items()):
            watermark.add_metric([str(project_id)], clock.watermark_ns / 1e9)
        yield watermark
        yield CounterMetricFamily("agentwatch_evaluations_done", "Evaluation jobs finished.", worker.done)
        yield CounterMetricFamily("agentwatch_evaluations_failed", "Evaluation jobs that failed and wait for a retry.",
                                  worker.failed)
        yield CounterMetricFamily("agentwatch_evaluations_postponed",
                                  "Evaluation jobs put off because a judge was down.", worker.postponed)
        yield CounterMetricFamily("agentwatch_evaluator_errors", "Evaluations that ended in an error.",
                                  p.scorer.errors)
        yield GaugeMetricFamily("agentwatch_evaluations_queued", "Evaluation jobs in the queue.",
                                evaluations.pending(p.store.engine))
        if p.memory is not None:
            yield GaugeMetricFamily("agentwatch_memory_limit_bytes", "ingest.memory_limit_mb in bytes.",
                                    p.memory.limit_bytes)


def render(pipeline: Pipeline) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline))
    return generate_latest(registry)
