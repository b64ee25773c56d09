"""Writing the good and bad events of SLOs into their rollup series.

System SLOs count completed sessions: :func:`record_sessions` adds each
session's verdict to ``slo:<name>``, in the completion transaction. Time-slice
SLOs count slices: :func:`record_slices` judges the slice window ending at a
check tick and adds its verdict to ``slice:<name>`` as one event.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sqlalchemy import Connection

from agentwatch.monitor.slo.series import NS, SeriesKey, SliceValue, _Reader, _series_totals
from agentwatch.monitor.slo.spec import LABELS, SloSpec
from agentwatch.store import rollups


def session_is_bad(spec: SloSpec, session: Mapping[str, Any]) -> bool:
    """A system SLO's verdict on one completed session."""
    if spec.metric == "error":
        return bool(session.get("errors"))
    if spec.metric == "latency_ms":
        value = (int(session["end_ns"]) - int(session["start_ns"])) / 1e6
    elif spec.metric == "work_ms":
        value = float(session.get("work_ms") or 0.0)
    else:
        value = float(session.get("cost_usd") or 0.0)
    return value > float(spec.threshold or 0.0)


def record_sessions(conn: Connection, project_id: int, specs: Iterable[SloSpec],
                    sessions: Iterable[Mapping[str, Any]]) -> None:
    """Add completed sessions to the series ``slo:<name>`` of every system SLO whose filter they match.

    Each session counts once, in the event-time minute it ended (count 1, failures 1 if bad).
    Call it in the transaction that completes the sessions. ``sessions`` are mappings with
    service, agent_version, intent, start_ns, end_ns, errors and cost_usd.
    """
    system = [spec for spec in specs if spec.kind == "system"]  # quantile SLOs read the sketches instead
    if not system:
        return
    deltas: dict[tuple[str, int, str, str, str], dict[str, float]] = {}
    for session in sessions:
        labels = {name: str(session.get(name) or "") for name in LABELS}
        end_ns = int(session["end_ns"])
        minute = end_ns - end_ns % rollups.MINUTE_NS
        for spec in system:
            if not spec.matches(labels):
                continue
            bad = 1.0 if session_is_bad(spec, session) else 0.0
            delta = deltas.setdefault((spec.name, minute, labels["service"], labels["agent_version"],
                                       labels["intent"]), dict.fromkeys(
                ("count", "weighted_count", "failures", "weighted_failures"), 0.0))
            delta["count"] += 1
            delta["weighted_count"] += 1
            delta["failures"] += bad
            delta["weighted_failures"] += bad
    for (name, minute, service, agent_version, intent), delta in sorted(deltas.items()):
        labels = {"service": service, "agent_version": agent_version, "intent": intent}
        rollups.add(conn, project_id, minute, labels, f"slo:{name}", "", delta)


def record_slices(conn: Connection, project_id: int, tick_ns: int, spec: SloSpec, check_interval_s: float = 300.0,
                  *, reader: _Reader | None = None) -> dict[SeriesKey, SliceValue]:
    """Judge the slice window ending at the tick per series and add each counted verdict to ``slice:<name>``.

    Answers every series' slice value (counted or not).
    """
    if not spec.sliced:
        raise ValueError(f"SLO {spec.name!r} is not a time-slice SLO")
    reader = reader or _Reader(conn, project_id, spec)
    values = reader.slice_values(tick_ns - int(spec.window_s * NS), tick_ns)
    interval_ns = int(max(check_interval_s, 60.0) * NS)
    already = _series_totals(conn, project_id, spec.series_dimension, tick_ns - interval_ns, tick_ns,
                             spec.group_by, {})
    for key, found in sorted(values.items()):
        if not found.counted or key in already:
            continue
        bad = 1.0 if found.bad else 0.0
        rollups.add(conn, project_id, tick_ns - 1, dict(zip(spec.group_by, key, strict=True)), spec.series_dimension,
                    "", {"count": 1, "weighted_count": 1, "failures": bad, "weighted_failures": bad})
    return values
