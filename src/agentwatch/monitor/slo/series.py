"""Reading an SLO's series over windows ending at a tick: event counts and time-slice values.

Counts come from rollup buckets (minutes for windows up to 6 hours, summed in
one read; hours beyond), never from the sessions. A slice's value is its
window's quantile, mean score or failure ratio, with its verdict: a mean or a
ratio is bad only with evidence (a one-sided bound beyond the target).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, bindparam, case, func, select

from agentwatch.monitor.slo.spec import SloSpec
from agentwatch.store import models as m
from agentwatch.store import rollups

#: One-sided 95% normal quantile: a slice is bad only when its bound is beyond the target.
Z_ONE_SIDED_95 = 1.645
NS = 1_000_000_000


@dataclass(frozen=True)
class Counts:
    """Valid and bad events (weighted) of one series over one window, and the raw number of events."""

    valid: float
    bad: float
    n: float

    @property
    def ratio(self) -> float | None:
        return self.bad / self.valid if self.valid > 0 else None


SeriesKey = tuple[str, ...]


def _series_totals(conn: Connection, project_id: int, dimension: str, since_ns: int, until_ns: int,
                   group_by: tuple[str, ...], filters: Mapping[str, tuple[str, ...]]
                   ) -> dict[SeriesKey, rollups.Totals]:
    """Bucket sums per ``group_by`` values, narrowed by ``filters`` (a list of values each)."""
    equal = {name: values[0] for name, values in filters.items() if len(values) == 1}
    multi = {name: values for name, values in filters.items() if len(values) > 1}
    columns = group_by + tuple(name for name in multi if name not in group_by)
    found = rollups.series_totals(conn, project_id, dimension, since_ns=since_ns, until_ns=until_ns,
                                  group_by=columns, **equal)
    out: dict[SeriesKey, rollups.Totals] = {}
    for key, totals in found.items():
        values = dict(zip(columns, key, strict=True))
        if any(values[name] not in allowed for name, allowed in multi.items()):
            continue
        short = key[: len(group_by)]
        out[short] = out[short] + totals if short in out else totals
    return out


def _template_ids(conn: Connection, project_id: int, template: str) -> list[int]:
    t = m.failure_templates.c
    query = select(t.id).where(t.project_id == project_id,
                               func.lower(t.template).contains(template.lower(), autoescape=True))
    return [int(row[0]) for row in conn.execute(query)]


def _template_bad(conn: Connection, project_id: int, spec: SloSpec, template_ids: list[int], since_ns: int,
                  until_ns: int) -> dict[SeriesKey, tuple[float, int]]:
    """Per series, the weighted number of sessions showing the template (and the raw number) in the window."""
    if not template_ids:
        return {}
    h = m.template_hits.c
    service = func.coalesce(h.service, "")
    where = [h.project_id == project_id, h.template_id.in_(template_ids), h.event_ns >= since_ns,
             h.event_ns < until_ns]
    if "service" in spec.filter:
        where.append(service.in_(spec.filter["service"]))
    per_session = (select(h.session_id, service.label("service"), func.max(h.weight).label("weight"))
                   .where(*where).group_by(h.session_id, service).subquery())
    columns = [per_session.c.service] if spec.group_by else []
    query = select(*columns, func.sum(per_session.c.weight), func.count()).select_from(per_session)
    if columns:
        query = query.group_by(*columns)
    out: dict[SeriesKey, tuple[float, int]] = {}
    for row in conn.execute(query):
        values = tuple(row)
        if values[len(columns)] is None:
            continue
        out[tuple(str(v) for v in values[: len(columns)])] = (float(values[len(columns)]), int(values[-1]))
    return out


@functools.cache
def _window_query(columns: tuple[str, ...], names: tuple[str, ...], windows: int) -> Any:
    """The statement of _Reader.window_counts for its columns, label names and number of windows, built once."""
    r = m.rollups.c
    where = [r.project_id == bindparam("b_project"), r.dimension == bindparam("b_dimension"),
             r.minute_ns >= bindparam("b_since"), r.minute_ns < bindparam("b_until"),
             *(r[name] == bindparam(f"b_label_{name}") for name in names)]
    sums = [func.sum(case((r.minute_ns >= bindparam(f"b_since_{i}"), column), else_=0))
            for i in range(windows) for column in (r.weighted_count, r.weighted_failures, r.count, r.errors)]
    query = select(*(r[name] for name in columns), *sums).where(*where)
    return query.group_by(*(r[name] for name in columns)) if columns else query


class _Reader:
    """Reads one SLO's series over windows ending at a tick (data strictly before it)."""

    def __init__(self, conn: Connection, project_id: int, spec: SloSpec) -> None:
        self.conn, self.project_id, self.spec = conn, project_id, spec
        self._template_ids: list[int] | None = None

    def template_ids(self) -> list[int]:
        if self._template_ids is None:
            self._template_ids = _template_ids(self.conn, self.project_id, self.spec.template)
        return self._template_ids

    def counts(self, since_ns: int, until_ns: int) -> dict[SeriesKey, Counts]:
        """The events the burn rates count: sessions, scored sessions or slices."""
        spec = self.spec
        if spec.sliced:
            found = _series_totals(self.conn, self.project_id, spec.series_dimension, since_ns, until_ns,
                                   spec.group_by, {})
            return {k: Counts(t.weighted_count, t.weighted_failures, t.count) for k, t in found.items()}
        if spec.kind == "template":
            return self.template_counts(since_ns, until_ns)
        found = _series_totals(self.conn, self.project_id, spec.series_dimension, since_ns, until_ns,
                               spec.group_by, spec.filter)
        return {k: Counts(t.weighted_count, t.weighted_failures, t.count - t.errors) for k, t in found.items()}

    def window_counts(self, tick_ns: int, windows: Sequence[float]) -> dict[SeriesKey, dict[float, Counts]]:
        """What :meth:`counts` sums, per series, for each window [tick - w, tick) of ``windows`` (not for
        templates), from one read of the minute buckets that sums every window in the database."""
        spec = self.spec
        filters = {} if spec.sliced else spec.filter
        equal = {name: values[0] for name, values in filters.items() if len(values) == 1}
        multi = {name: values for name, values in filters.items() if len(values) > 1}
        columns = spec.group_by + tuple(name for name in multi if name not in spec.group_by)
        query = _window_query(columns, tuple(sorted(equal)), len(windows))
        params: dict[str, Any] = {"b_project": self.project_id, "b_dimension": spec.series_dimension,
                                  "b_since": tick_ns - int(max(windows) * NS), "b_until": tick_ns}
        params.update({f"b_label_{name}": value for name, value in equal.items()})
        params.update({f"b_since_{i}": tick_ns - int(w * NS) for i, w in enumerate(windows)})
        found: dict[SeriesKey, list[list[float]]] = {}
        width = len(columns)
        for row in self.conn.execute(query, params):
            values = tuple(row)
            labels = dict(zip(columns, (str(v) for v in values[:width]), strict=True))
            if any(labels[name] not in allowed for name, allowed in multi.items()):
                continue
            key = tuple(labels[name] for name in spec.group_by)
            into = found.setdefault(key, [[0.0] * 4 for _ in windows])
            for i in range(len(windows)):
                for j in range(4):
                    into[i][j] += float(values[width + 4 * i + j] or 0.0)
        out: dict[SeriesKey, dict[float, Counts]] = {}
        for key, per in found.items():
            for w, (valid, bad, count, errors) in zip(windows, per, strict=True):
                n = count if spec.sliced else count - errors
                if n or valid:
                    out.setdefault(key, {})[w] = Counts(valid, bad, n)
        return out

    def template_counts(self, since_ns: int, until_ns: int) -> dict[SeriesKey, Counts]:
        spec = self.spec
        sessions = _series_totals(self.conn, self.project_id, rollups.SESSION_DIMENSION, since_ns, until_ns,
                                  spec.group_by, spec.filter)
        bad = _template_bad(self.conn, self.project_id, spec, self.template_ids(), since_ns, until_ns)
        return {k: Counts(t.weighted_count, bad.get(k, (0.0, 0))[0], t.count) for k, t in sessions.items()}

    def slice_values(self, since_ns: int, until_ns: int) -> dict[SeriesKey, SliceValue]:
        """Per series, the value of the slice window [since, until) and its verdict."""
        spec = self.spec
        out: dict[SeriesKey, SliceValue] = {}
        if spec.kind == "quantile":
            for key, (value, n) in _sketch_quantiles(self.conn, self.project_id, spec, since_ns, until_ns).items():
                out[key] = SliceValue(value, n, n >= spec.min_n, value > float(spec.threshold or 0.0))
            return out
        if spec.kind == "template":
            for key, c in self.template_counts(since_ns, until_ns).items():
                out[key] = _ratio_slice(spec, min(c.ratio or 0.0, 1.0), c.n)
            return out
        found = _series_totals(self.conn, self.project_id, spec.evaluator, since_ns, until_ns, spec.group_by,
                               spec.filter)
        for key, t in found.items():
            n = t.count - t.errors
            if spec.kind == "mean":
                mean, variance = t.mean, t.variance
                if mean is None or variance is None:
                    continue
                upper = mean + spec.evidence_z * math.sqrt(variance / n) if n > 0 else mean
                out[key] = SliceValue(mean, n, n >= spec.min_n, upper < float(spec.mean_at_least or 0.0))
            elif t.failure_ratio is not None:
                out[key] = _ratio_slice(spec, t.failure_ratio, n)
        return out


@dataclass(frozen=True)
class SliceValue:
    """A slice window's mean score (or failure ratio), its scored sessions, and the verdict."""

    value: float
    n: float
    #: False when n < min_n: the slice is skipped (no data is not good).
    counted: bool
    bad: bool


def wilson_lower(ratio: float, n: float, z: float = Z_ONE_SIDED_95) -> float:
    """The Wilson score lower bound of a proportion (one-sided 95% with the default z)."""
    if n <= 0:
        return 0.0
    centre = ratio + z * z / (2 * n)
    spread = z * math.sqrt(max(ratio * (1 - ratio), 0.0) / n + z * z / (4 * n * n))
    return max((centre - spread) / (1 + z * z / n), 0.0)


def _ratio_slice(spec: SloSpec, ratio: float, n: float) -> SliceValue:
    return SliceValue(ratio, n, n >= spec.min_n, wilson_lower(ratio, n, spec.evidence_z) > float(spec.limit or 0.0))


def _sketch_quantiles(conn: Connection, project_id: int, spec: SloSpec, since_ns: int, until_ns: int
                      ) -> dict[SeriesKey, tuple[float, float]]:
    """Per series, the spec's quantile of its metric over [since, until) and the sessions it rests on."""
    out: dict[SeriesKey, tuple[float, float]] = {}
    for key, sketch in rollups.merged_sketches(conn, project_id, spec.metric, since_ns=since_ns, until_ns=until_ns,
                                               group_by=spec.group_by, where=spec.filter).items():
        value = sketch.get_quantile_value(float(spec.quantile or 0.5)) if sketch.count else None
        if value is not None:
            out[key] = (float(value), float(sketch.count))
    return out


#: Windows up to this long are summed from one read of their minute buckets.
_MINUTE_WINDOWS_S = 6 * 3600.0


def _windows(reader: _Reader, tick_ns: int, seconds: Iterable[float]) -> dict[SeriesKey, dict[float, Counts]]:
    """Per series, the counts of every window [tick - w, tick).

    The short windows (up to 6 hours) come from one read of the minute buckets, summed per window here;
    the longer ones read hours (``rollups.series_totals``)."""
    table: dict[SeriesKey, dict[float, Counts]] = {}
    wanted = sorted(set(seconds))
    short = [w for w in wanted if w <= _MINUTE_WINDOWS_S] if reader.spec.kind != "template" else []
    if short:
        for key, per in reader.window_counts(tick_ns, short).items():
            table.setdefault(key, {}).update(per)
    for w in wanted:
        if w in short:
            continue
        for key, counts in reader.counts(tick_ns - int(w * NS), tick_ns).items():
            table.setdefault(key, {})[w] = counts
    return table


def _labels(spec: SloSpec, key: SeriesKey) -> dict[str, str]:
    labels = {name: values[0] for name, values in spec.filter.items() if len(values) == 1}
    labels.update(zip(spec.group_by, key, strict=True))
    return labels
