"""Rare events, judge calibration, evaluator errors and silence (methods.md §3, §5, §6).

- ``rare_event``: only evaluators with ``severity: page``. A failing score
  of one scored at inclusion probability 1 pages at once; one scored at
  p < 1 opens a ticket with the population it implies (1/p per failure) and
  the exact Poisson 95% interval divided by p, and pages once a label with
  verdict ``correct`` or ``real_failure`` confirms it. The alert stays
  firing while such a failure is within ``rare_events.window``.
- ``calibration``: agreement of an evaluator version with the human labels
  of the last ``window`` (``correct``/``real_failure`` agree,
  ``false_positive``/``false_negative`` disagree, ``edge_case`` is left out).
  At ``min_labels`` or more, point agreement below the floor is a ticket and
  a Wilson 95% upper bound below it pages the owner. A label's event time is
  its session's end; ``started_at`` is the event time of the label from
  which the condition has held.
- ``evaluator_errors``: an evaluator version whose error ratio over the
  window passes the floor, with at least ``min_n`` attempts.
- ``no_data``: a configured service with no completed session, or a
  configured evaluator with no score, for ``period``, once warm.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

from sqlalchemy import Connection, bindparam, func, select

from agentwatch.alert.types import MAX_EXAMPLES, Candidate
from agentwatch.monitor.clusters import first_trace
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.stats import poisson_ci, wilson
from agentwatch.store import models as m
from agentwatch.store.rollups import SESSION_DIMENSION, Totals, series_totals

_NS = 1_000_000_000
AGREE = ("correct", "real_failure")
DISAGREE = ("false_positive", "false_negative")


@functools.cache
def _paging_failures_query(evaluators: tuple[str, ...]) -> Any:
    """The failing scores of the paging ``evaluators`` in a window, with their series, whether a label
    confirmed them and the session's first trace; built once per set of evaluators."""
    sc, se, lb = m.scores.c, m.sessions.c, m.labels.c
    confirmed = (select(func.count()).where(lb.project_id == sc.project_id, lb.session_id == sc.session_id,
                                            lb.evaluator == sc.evaluator, lb.verdict.in_(AGREE))
                 .scalar_subquery())
    return (select(sc.evaluator, sc.evaluator_version, sc.session_id, sc.event_time_ns, sc.inclusion_probability,
                   sc.reason, se.service, se.agent_version, se.intent, confirmed,
                   first_trace(sc.project_id, sc.session_id))
            .select_from(m.scores.join(m.sessions, (se.project_id == sc.project_id)
                                       & (se.session_id == sc.session_id)))
            .where(sc.project_id == bindparam("b_project"), sc.evaluator.in_(list(evaluators)),
                   sc.passed.is_(False), sc.status == "ok", sc.shadow.is_(False),
                   sc.event_time_ns >= bindparam("b_since"), sc.event_time_ns < bindparam("b_until"))
            .order_by(sc.event_time_ns, sc.id))


def rare_events(conn: Connection, project_id: int, tick_ns: int, specs: Iterable[Any],
                config: MonitorConfig) -> list[Candidate]:
    paging = {spec.name: spec for spec in specs if spec.severity == "page"}
    if not paging:
        return []
    since = tick_ns - int(config.rare_events.window_s * _NS)
    rows = conn.execute(_paging_failures_query(tuple(sorted(paging))),
                        {"b_project": project_id, "b_since": since, "b_until": tick_ns}).all()
    groups: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        groups.setdefault((row[0], row[1], row.service or "", row.agent_version or "", row.intent or ""),
                          []).append(row)
    out: list[Candidate] = []
    for (name, version, service, agent_version, intent), found in groups.items():
        spec = paging[name]
        probability = min(float(r.inclusion_probability) for r in found)
        certain = probability >= 1.0
        is_confirmed = any(r[9] for r in found)
        k = len(found)
        low, high = poisson_ci(k)
        estimate = sum(1.0 / max(float(r.inclusion_probability), 1e-9) for r in found)
        figures: dict[str, Any] = {"observed": k, "n": k, "inclusion_probability": probability,
                                   "confirmed": is_confirmed, "reasons": [r.reason for r in found[:3]]}
        if certain:
            severity = "page"
            summary = f"{name} failed in {k} session{'s' if k > 1 else ''} (scored on every session): {found[0].reason}"
        else:
            severity = "page" if is_confirmed else "ticket"
            figures.update({"estimate": round(estimate, 3),
                            "ci95": [round(low / probability, 3), round(high / probability, 3)]})
            summary = (f"{name} failed in {k} sampled session{'s' if k > 1 else ''} at p={probability:g}: about "
                       f"{estimate:.0f} in the population (95% CI {low / probability:.1f}-{high / probability:.1f})"
                       + ("; confirmed by a label" if is_confirmed else ""))
        out.append(Candidate(
            kind="rare_event", rule="failure", severity=severity, summary=summary, dimension=name, evaluator=name,
            evaluator_version=version, labels={"service": service, "agent_version": agent_version, "intent": intent},
            figures=figures, owner=spec.owner,
            session_ids=list(dict.fromkeys(r.session_id for r in found))[:MAX_EXAMPLES],
            trace_ids=[t for t in dict.fromkeys(r[10] for r in found) if t][:MAX_EXAMPLES]))
    return out


def calibration(conn: Connection, project_id: int, tick_ns: int, specs: Iterable[Any],
                config: MonitorConfig) -> list[Candidate]:
    cfg = config.calibration
    owners = {spec.name: spec.owner for spec in specs}
    if not owners:
        return []
    lb = m.labels.c
    rows = conn.execute(
        select(lb.evaluator, lb.evaluator_version, lb.verdict, lb.event_time_ns, lb.session_id)
        .where(lb.project_id == project_id, lb.evaluator.in_(sorted(owners)),
               lb.event_time_ns >= tick_ns - int(cfg.window_s * _NS),
               lb.event_time_ns < tick_ns, lb.verdict.in_(AGREE + DISAGREE))
        .order_by(lb.evaluator, lb.evaluator_version, lb.event_time_ns, lb.id)).all()
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.evaluator, row.evaluator_version or ""), []).append(row)
    out: list[Candidate] = []
    for (name, version), labels in groups.items():
        n = len(labels)
        agree = sum(1 for r in labels if r.verdict in AGREE)
        if n < cfg.min_labels or agree / n >= cfg.floor:
            continue
        upper = wilson(agree, n)[1]
        severity = "page" if upper < cfg.floor else "ticket"
        # The condition began at the label from which every prefix up to now has met it.
        started = labels[-1].event_time_ns
        running_agree = agree
        for i in range(n - 1, -1, -1):
            if i + 1 < cfg.min_labels or running_agree / (i + 1) >= cfg.floor:
                break
            started = labels[i].event_time_ns
            running_agree -= 1 if labels[i].verdict in AGREE else 0
        disagreeing = [r.session_id for r in labels if r.verdict in DISAGREE]
        out.append(Candidate(
            kind="calibration", rule="agreement", severity=severity, dimension=name, evaluator=name,
            evaluator_version=version, owner=owners.get(name), started_ns=int(started),
            summary=(f"{name}@{version[:8]} agrees with {agree} of {n} human labels ({agree / n:.0%}) over the last "
                     f"{cfg.window_s / 86400:g} days, below the floor {cfg.floor:.0%}"
                     + (f"; the Wilson 95% upper bound {upper:.2f} is below it too" if severity == "page" else "")),
            figures={"observed": round(agree / n, 4), "n": n, "agree": agree, "floor": cfg.floor,
                     "ci95": [round(x, 4) for x in wilson(agree, n)], **_latest_run(conn, project_id, name, version)},
            session_ids=list(dict.fromkeys(reversed(disagreeing)))[:MAX_EXAMPLES]))
    return out


def _latest_run(conn: Connection, project_id: int, evaluator: str, version: str) -> dict[str, Any]:
    """The calibration run the latest label of this version triggered: its id, kappa and confusion matrix."""
    c = m.calibration_runs.c
    row = conn.execute(select(c.id, c.metrics).where(c.project_id == project_id, c.evaluator == evaluator,
                                                     c.evaluator_version == version, c.source == "labels")
                       .order_by(c.id.desc()).limit(1)).first()
    if row is None:
        return {}
    return {"calibration_run": int(row.id), "kappa": row.metrics.get("kappa"),
            "confusion": row.metrics.get("confusion")}


def evaluator_errors(windows: dict[str, dict[tuple[str, ...], Totals]], specs: Iterable[Any],
                     config: MonitorConfig) -> list[Candidate]:
    """From the window totals drift read: evaluator versions failing to evaluate too often."""
    cfg = config.evaluator_errors
    out: list[Candidate] = []
    for spec in specs:
        per_version: dict[str, Totals] = {}
        for (_, _, _, version), value in windows.get(spec.name, {}).items():
            per_version[version] = per_version[version] + value if version in per_version else value
        for version, value in sorted(per_version.items()):
            if value.count < cfg.min_n or value.errors / value.count < cfg.floor:
                continue
            ratio = value.errors / value.count
            out.append(Candidate(
                kind="evaluator_errors", rule="error_ratio", severity="ticket", dimension=spec.name,
                evaluator=spec.name, evaluator_version=version, owner=spec.owner,
                summary=(f"{spec.name}@{version[:8]} could not evaluate {value.errors:.0f} of {value.count:.0f} "
                         f"sessions ({ratio:.0%}) over the last {cfg.window_s / 3600:g}h"),
                figures={"observed": round(ratio, 4), "n": value.count, "errors": value.errors, "floor": cfg.floor}))
    return out


def no_data(conn: Connection, project_id: int, tick_ns: int, config: MonitorConfig, warm_since: int | None,
            first_seen: dict[str, int]) -> list[Candidate]:
    cfg = config.no_data
    if not cfg.services and not cfg.evaluators:
        return []
    since = tick_ns - int(cfg.period_s * _NS)
    out: list[Candidate] = []
    if cfg.services:
        seen = series_totals(conn, project_id, SESSION_DIMENSION, since_ns=since, until_ns=tick_ns,
                             group_by=("service",))
        for service in cfg.services:
            started = first_seen.get(service, warm_since)
            if started is None or tick_ns - started < int(cfg.warmup_s * _NS):
                continue
            if seen.get((service,), None) is None or not seen[(service,)].count:
                out.append(Candidate(
                    kind="no_data", rule="service", severity="ticket", dimension=SESSION_DIMENSION,
                    labels={"service": service},
                    summary=f"no completed session of {service} for {cfg.period_s / 60:g} minutes",
                    figures={"observed": 0, "n": 0, "period_s": cfg.period_s}))
    if cfg.evaluators and warm_since is not None and tick_ns - warm_since >= int(cfg.warmup_s * _NS):
        for name in cfg.evaluators:
            scored = series_totals(conn, project_id, name, since_ns=since, until_ns=tick_ns, group_by=())
            if not scored.get((), None) or not scored[()].count:
                out.append(Candidate(
                    kind="no_data", rule="evaluator", severity="ticket", dimension=name, evaluator=name,
                    summary=f"evaluator {name} wrote no score for {cfg.period_s / 60:g} minutes",
                    figures={"observed": 0, "n": 0, "period_s": cfg.period_s}))
    return out
