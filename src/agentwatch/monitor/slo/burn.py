"""Burn rates and the multiwindow multi-burn-rate alert decision at a check tick.

Burn rates follow the SRE Workbook (``methods.md`` section 1): BR_w = e_w / B.
:func:`check` raises a candidate alert iff both the long and the short window
of a pair burn faster than BR* = f * T / L, and a page also needs a minimum of
bad events in the long window. Each candidate carries its figures, a summary
and a few example sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from sqlalchemy import Connection, and_, select

from agentwatch.alert.types import Candidate
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.monitor.slo.record import record_slices
from agentwatch.monitor.slo.series import NS, Counts, SeriesKey, SliceValue, _labels, _Reader, _template_ids, _windows
from agentwatch.monitor.slo.spec import ALERT_WINDOWS_S, BURN_WINDOWS, BurnWindow, SloSpec, window_label
from agentwatch.store import models as m

#: A page needs at least this many weighted bad events in its long window (the min-count gate) ...
MIN_BAD_EVENTS = 3.0
#: ... or, for a time-slice SLO, this many bad slices.
MIN_BAD_SLICES = 2.0
#: Most example sessions an alert carries.
MAX_EXAMPLES = 5


def burn_rate(counts: Counts | None, budget: float) -> float | None:
    """BR = e / B; None without valid events."""
    if counts is None or counts.ratio is None or budget <= 0:
        return None
    return counts.ratio / budget


@dataclass(frozen=True)
class _Holding:
    window: BurnWindow
    long: Counts
    short: Counts
    long_rate: float
    short_rate: float


def _holding(spec: SloSpec, per: Mapping[float, Counts]) -> _Holding | None:
    """The most urgent window pair whose long and short burn rates both exceed its factor."""
    min_bad = MIN_BAD_SLICES if spec.sliced else MIN_BAD_EVENTS
    for window in BURN_WINDOWS:
        long, short = per.get(window.long_s), per.get(window.short_s)
        long_rate, short_rate = burn_rate(long, spec.budget), burn_rate(short, spec.budget)
        if long is None or short is None or long_rate is None or short_rate is None:
            continue
        factor = window.factor(spec.period_s)
        if long_rate > factor and short_rate > factor and (window.severity != "page" or long.bad >= min_bad):
            return _Holding(window, long, short, long_rate, short_rate)
    return None


def _budget_left(counts: Counts | None, budget: float) -> float:
    """1 - consumed: consumed = bad / (B * valid) over the period; negative once overspent."""
    if counts is None or counts.valid <= 0 or budget <= 0:
        return 1.0
    return 1.0 - counts.bad / (budget * counts.valid)


def check(conn: Connection, project_id: int, tick_ns: int, specs: Iterable[SloSpec], catalogue: Catalogue | None,
          *, check_interval_s: float = 300.0) -> tuple[list[Candidate], set[tuple[str, str]]]:
    """Burn-rate alert conditions holding at an event-time tick (data strictly before ``tick_ns`` counts).

    Records the tick's time slices first (so call it inside a transaction, once per tick, every
    ``check_interval_s``; a slice already recorded within the last interval is not recorded again).
    Answers one candidate per SLO and series, at the most urgent severity that holds, and the
    ``(kind, rule)`` pairs checked, so that alerts of rules no longer holding are resolved.
    """
    candidates: list[Candidate] = []
    checked: set[tuple[str, str]] = set()
    for spec in specs:
        checked.add(("burn_rate", spec.rule))
        reader = _Reader(conn, project_id, spec)
        slices = record_slices(conn, project_id, tick_ns, spec, check_interval_s, reader=reader) if spec.sliced else {}
        table = _windows(reader, tick_ns, ALERT_WINDOWS_S)
        holding = {key: found for key, per in table.items() if (found := _holding(spec, per)) is not None}
        if not holding:
            continue
        period = _windows(reader, tick_ns, (spec.period_s,))
        for key in sorted(holding):
            budget_counts = period.get(key, {}).get(spec.period_s)
            candidates.append(_candidate(conn, project_id, tick_ns, spec, catalogue, key, holding[key],
                                         _budget_left(budget_counts, spec.budget), slices.get(key)))
    return candidates, checked


def _pct(value: float) -> str:
    if value >= 0.1 or value == 0:
        return f"{value:.0%}"
    return f"{value:.1%}" if value >= 0.01 else f"{value:.2%}"


def _times(rate: float) -> str:
    return f"{rate:.0f}x" if rate >= 10 else f"{rate:.1f}x"


def _summary(spec: SloSpec, labels: Mapping[str, str], found: _Holding, current: SliceValue | None) -> str:
    scope = " ".join(v for v in labels.values() if v)
    sessions = f"{scope} sessions" if scope else "sessions"
    over = window_label(found.window.long_s)
    ratio = found.long.ratio or 0.0
    burn = f"burn {_times(found.long_rate)} the budget"
    if spec.sliced:
        of = f" of {sessions}" if scope else ""
        slices = f"bad in {found.long.bad:.0f} of the last {found.long.n:.0f} slices"
        over_window = f"over the last {window_label(spec.window_s)}{of}"
        if current is None:
            what = f"{spec.evaluator or spec.template or spec.metric} off target {over_window}"
        elif spec.kind == "quantile":
            what = (f"p{float(spec.quantile or 0) * 100:g} {spec.metric} {current.value:.0f} above "
                    f"{spec.threshold:g} {over_window}")
        elif spec.kind == "mean":
            what = f"{spec.evaluator} mean {current.value:.2f} below {spec.mean_at_least:g} {over_window}"
        else:
            what = (f"{spec.evaluator or 'template ' + repr(spec.template)} failure ratio {_pct(current.value)} "
                    f"above {_pct(float(spec.limit or 0.0))} {over_window}")
        n = f" (n={current.n:.0f})" if current is not None else ""
        return f"{spec.name}: {what}{n}; {slices} ({burn})"
    if spec.kind == "system":
        if spec.metric == "latency_ms":
            what = f"slower than {spec.threshold:g} ms"
        elif spec.metric == "work_ms":
            what = f"with more than {spec.threshold:g} ms of agent work"
        elif spec.metric == "cost_usd":
            what = f"costing more than ${spec.threshold:g}"
        else:
            what = "ended with an error"
        return f"{spec.name}: {_pct(ratio)} of {sessions} {what} over {over} ({burn})"
    what = f"failed {spec.evaluator}" if spec.kind == "ratio" else f"hit failure template {spec.template!r}"
    return (f"{spec.name}: {_pct(ratio)} of {sessions} {what} over {over} "
            f"(limit {_pct(float(spec.limit or 0.0))}, {burn})")


def _candidate(conn: Connection, project_id: int, tick_ns: int, spec: SloSpec, catalogue: Catalogue | None,
               key: SeriesKey, found: _Holding, budget_left: float, current: SliceValue | None) -> Candidate:
    labels = _labels(spec, key)
    evaluator = catalogue.by_name(spec.evaluator) if catalogue is not None and spec.evaluator else None
    long_label, short_label = window_label(found.window.long_s), window_label(found.window.short_s)
    figures: dict[str, Any] = {
        "observed": found.long.ratio, "objective": spec.target, "budget": spec.budget,
        "burn_rates": {long_label: found.long_rate, short_label: found.short_rate},
        "threshold": found.window.factor(spec.period_s), "n": found.long.valid, "bad": found.long.bad,
        "budget_left": budget_left, "period": window_label(spec.period_s),
    }
    if spec.sliced:
        figures["slices"] = found.long.n
        figures["slice_window"] = window_label(spec.window_s)
        figures["slice_target"] = (spec.mean_at_least if spec.kind == "mean" else spec.threshold
                                   if spec.kind == "quantile" else spec.limit)
        if current is not None:
            figures["slice_value"] = current.value
            figures["slice_n"] = current.n
    # Example sessions: bad ones from the short window (a time slice: from the slice window).
    span_s = spec.window_s if spec.sliced else found.window.short_s
    session_ids, trace_ids = examples(conn, project_id, spec, labels, tick_ns - int(span_s * NS), tick_ns)
    return Candidate(
        kind="burn_rate", rule=spec.rule, severity=found.window.severity,
        summary=_summary(spec, labels, found, current),
        dimension=spec.dimension, evaluator=spec.evaluator, evaluator_version=evaluator.version if evaluator else "",
        labels=labels, figures=figures, session_ids=session_ids, trace_ids=trace_ids,
        owner=spec.owner or (evaluator.owner if evaluator else None),
    )


def examples(conn: Connection, project_id: int, spec: SloSpec, labels: Mapping[str, str], since_ns: int,
             until_ns: int) -> tuple[list[str], list[str]]:
    """A few bad sessions of one series in [since, until), newest first, and their trace ids."""
    s = m.sessions.c
    narrow = [s[name] == value for name, value in labels.items() if value]
    narrow += [s[name].in_(values) for name, values in spec.filter.items() if len(values) > 1]
    session_ids: list[str]
    trace_ids: list[str] = []
    if spec.kind in ("system", "quantile"):
        bad: Any = s.errors > 0
        if spec.metric == "latency_ms":
            bad = s.end_ns - s.start_ns > int(float(spec.threshold or 0.0) * 1e6)
        elif spec.metric == "work_ms":
            bad = s.work_ms > float(spec.threshold or 0.0)
        elif spec.metric == "cost_usd":
            bad = s.cost_usd > float(spec.threshold or 0.0)
        query = (select(s.session_id)
                 .where(s.project_id == project_id, s.complete.is_(True), s.end_ns >= since_ns, s.end_ns < until_ns,
                        bad, *narrow)
                 .order_by(s.end_ns.desc(), s.session_id).limit(MAX_EXAMPLES))
        session_ids = [str(row[0]) for row in conn.execute(query)]
    elif spec.kind == "template":
        h = m.template_hits.c
        ids = _template_ids(conn, project_id, spec.template)
        if not ids:
            return [], []
        where = [h.project_id == project_id, h.template_id.in_(ids), h.event_ns >= since_ns, h.event_ns < until_ns]
        service = labels.get("service") or ""
        if service:
            where.append(h.service == service)
        elif "service" in spec.filter:
            where.append(h.service.in_(spec.filter["service"]))
        session_ids = []
        for session_id, trace_id in conn.execute(select(h.session_id, h.trace_id).where(*where)
                                                 .order_by(h.event_ns.desc(), h.id).limit(MAX_EXAMPLES * 4)):
            if session_id not in session_ids and len(session_ids) < MAX_EXAMPLES:
                session_ids.append(str(session_id))
                if trace_id and trace_id not in trace_ids:
                    trace_ids.append(str(trace_id))
        return session_ids, trace_ids
    else:
        c = m.scores.c
        failing: Any = (c.score < float(spec.mean_at_least or 0.0)) if spec.kind == "mean" else c.passed.is_(False)
        query = select(c.session_id).where(
            c.project_id == project_id, c.evaluator == spec.evaluator, c.shadow.is_(False), c.status == "ok", failing,
            c.event_time_ns >= since_ns, c.event_time_ns < until_ns)
        if narrow:
            query = query.join(m.sessions, and_(s.project_id == c.project_id, s.session_id == c.session_id)).where(
                *narrow)
        query = query.order_by(c.event_time_ns.desc(), c.session_id).limit(MAX_EXAMPLES * 2)
        session_ids = list(dict.fromkeys(str(row[0]) for row in conn.execute(query)))[:MAX_EXAMPLES]
    if session_ids:
        ts = m.trace_sessions.c
        query = select(ts.session_id, ts.trace_id).where(ts.project_id == project_id, ts.session_id.in_(session_ids))
        by_session: dict[str, list[str]] = {}
        for session_id, trace_id in conn.execute(query):
            by_session.setdefault(str(session_id), []).append(str(trace_id))
        for session_id in session_ids:
            for trace_id in sorted(by_session.get(session_id, [])):
                if trace_id not in trace_ids:
                    trace_ids.append(trace_id)
    return session_ids, trace_ids
