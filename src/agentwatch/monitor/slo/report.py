"""SLO status for ``GET /api/v1/slos`` and the UI: per SLO and series, value, budget left and burn rates."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sqlalchemy import Connection

from agentwatch.monitor.slo.burn import _budget_left, burn_rate
from agentwatch.monitor.slo.series import NS, SeriesKey, _labels, _Reader, _windows
from agentwatch.monitor.slo.spec import ALERT_WINDOWS_S, SKETCHED, SloSpec, window_label
from agentwatch.store import rollups

#: Window over which status() reports latency and cost quantiles.
QUANTILE_WINDOW_S = 3600.0


def status(conn: Connection, project_id: int, now_ns: int, specs: Iterable[SloSpec]) -> list[dict[str, Any]]:
    """Per SLO and series: target, value over the period, error budget left, burn rates of every window.

    An SLO without data yet answers one entry with no labels, value None and its whole budget left.
    """
    out: list[dict[str, Any]] = []
    for spec in specs:
        reader = _Reader(conn, project_id, spec)
        seconds = tuple(sorted(set(ALERT_WINDOWS_S) | {spec.period_s}))
        table = _windows(reader, now_ns, seconds)
        current = reader.slice_values(now_ns - int(spec.window_s * NS), now_ns) if spec.sliced else {}
        keys: list[SeriesKey | None] = [*sorted(table)] or [None]
        for key in keys:
            per = table.get(key, {}) if key is not None else {}
            period = per.get(spec.period_s)
            labels = _labels(spec, key if key is not None else tuple("" for _ in spec.group_by))
            entry: dict[str, Any] = {
                "name": spec.name, "layer": spec.layer, "kind": spec.kind, "dimension": spec.dimension,
                "evaluator": spec.evaluator or None, "metric": spec.metric or None,
                "target": spec.target, "value": None if period is None or period.ratio is None else 1.0 - period.ratio,
                "error_budget_left": _budget_left(period, spec.budget),
                "burn_rates": {window_label(w): burn_rate(per.get(w), spec.budget) for w in ALERT_WINDOWS_S},
                "labels": labels, "period": window_label(spec.period_s),
                "window": window_label(spec.window_s) if spec.sliced else None,
                "time_slices": spec.sliced, "valid": period.valid if period else 0.0,
                "bad": period.bad if period else 0.0, "owner": spec.owner,
            }
            if spec.kind in ("system", "quantile") and spec.metric != "error":
                entry["threshold"] = spec.threshold
            if spec.sliced:
                entry["slice_target"] = (spec.mean_at_least if spec.kind == "mean" else spec.threshold
                                         if spec.kind == "quantile" else spec.limit)
                now = current.get(key) if key is not None else None
                entry["current"] = now.value if now else None
                entry["current_n"] = now.n if now else 0.0
            elif spec.kind in ("ratio", "template"):
                entry["limit"] = spec.limit
            if spec.kind in ("system", "quantile") and spec.metric in SKETCHED:
                entry["quantiles"] = quantiles(conn, project_id, spec.metric, labels, spec.filter,
                                               now_ns - int(QUANTILE_WINDOW_S * NS), now_ns)
                entry["quantiles_window"] = window_label(QUANTILE_WINDOW_S)
            out.append(entry)
    return out


def quantiles(conn: Connection, project_id: int, metric: str, labels: Mapping[str, str],
              filters: Mapping[str, tuple[str, ...]], since_ns: int, until_ns: int,
              qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float | None]:
    """p50/p95/p99 of the agent's work time (ms) or cost (USD) per session of one series."""
    where: dict[str, tuple[str, ...]] = {name: (value,) for name, value in labels.items() if value}
    where.update({name: values for name, values in filters.items() if not labels.get(name)})
    merged = rollups.merged_sketches(conn, project_id, metric, since_ns=since_ns, until_ns=until_ns,
                                     where=where).get(()) or rollups.new_sketch()
    out: dict[str, float | None] = {}
    for q in qs:
        value = merged.get_quantile_value(q) if merged.count else None
        out[f"p{q * 100:g}"] = None if value is None else float(value)
    return out
