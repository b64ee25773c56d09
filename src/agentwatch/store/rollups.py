"""Per-minute rollups in event time: what every check reads instead of sessions.

A bucket is one event-time minute of one series: project, service, agent
version, intent, dimension (an evaluator's name, or ``_session`` for the
sessions themselves) and evaluator version. It holds the count, the
Horvitz-Thompson weighted count and sums (each score weighted by 1 / its
inclusion probability), the weighted sum of squares, failures and
evaluation errors; the ``_session`` buckets also hold mergeable DDSketch
quantile sketches of session latency and cost. Buckets are updated in the
transaction that writes the scores or completes the sessions, so late data
lands in the minute it belongs to, and checks cost time in proportion to
the buckets they read, never to the sessions stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto
from sqlalchemy import Connection, and_, bindparam, func, select, tuple_, update

from agentwatch.store import models as m
from agentwatch.store.engine import insert_on_conflict

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
SESSION_DIMENSION = "_session"
#: Shadow scores (a new evaluator version scoring past sessions) go to their own series, ``shadow:<name>``:
#: drift reads them as the new version's baseline, SLOs never count a session twice.
SHADOW_PREFIX = "shadow:"
#: Sketches keep 1% relative accuracy.
RELATIVE_ACCURACY = 0.01
_ADDED = ("count", "weighted_count", "weighted_sum", "weighted_sum_sq", "failures", "weighted_failures", "errors")


def new_sketch() -> DDSketch:
    # The plain sketch: its protobuf form reads back into the same kind, so stored sketches merge.
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


def sketch_to_bytes(sketch: Any) -> bytes:
    return bytes(DDSketchProto.to_proto(sketch).SerializeToString())  # type: ignore[no-untyped-call]


def sketch_from_bytes(data: bytes | None) -> Any:
    if not data:
        return new_sketch()
    message = DDSketchMessage()
    message.ParseFromString(data)
    return DDSketchProto.from_proto(message)  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=50_000)
def _decoded(data: bytes) -> Any:
    """The sketch stored as ``data``, shared: merge it into another, never change it. A check reads the
    same minutes' sketches again at each tick, and reading one back adds its bins one at a time; a
    bucket that changes has other bytes."""
    return sketch_from_bytes(data)


@dataclass(frozen=True)
class Key:
    project_id: int
    minute_ns: int
    service: str
    agent_version: str
    intent: str
    dimension: str
    evaluator_version: str

    def where(self, table: Any = m.rollups) -> Any:
        r = table.c
        return and_(*(r[name] == value for name, value in self.__dict__.items()))

    def hour(self) -> Key:
        return Key(self.project_id, self.minute_ns - self.minute_ns % HOUR_NS, self.service, self.agent_version,
                   self.intent, self.dimension, self.evaluator_version)


def _key(project_id: int, time_ns: int, summary: Mapping[str, Any], dimension: str, version: str) -> Key:
    return Key(project_id, time_ns - time_ns % MINUTE_NS, summary.get("service") or "",
               summary.get("agent_version") or "", summary.get("intent") or "", dimension, version)


def score_deltas(project_id: int, summary: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]
                 ) -> dict[Key, dict[str, float]]:
    """Bucket increments for score rows of one session (shadow scores in their own ``shadow:`` series)."""
    out: dict[Key, dict[str, float]] = {}
    for row in rows:
        dimension = (SHADOW_PREFIX if row.get("shadow") else "") + row["evaluator"]
        key = _key(project_id, int(row["event_time_ns"]), summary, dimension, row["evaluator_version"])
        delta = out.setdefault(key, dict.fromkeys(_ADDED, 0.0))
        delta["count"] += 1
        if row["status"] != "ok" or row["score"] is None:
            delta["errors"] += 1
            continue
        weight = 1.0 / max(float(row["inclusion_probability"]), 1e-9)
        score = float(row["score"])
        delta["weighted_count"] += weight
        delta["weighted_sum"] += weight * score
        delta["weighted_sum_sq"] += weight * score * score
        if row["passed"] is False:
            delta["failures"] += 1
            delta["weighted_failures"] += weight
    return out


def apply_scores(conn: Connection, project_id: int, summary: Mapping[str, Any],
                 rows: Iterable[Mapping[str, Any]]) -> None:
    _add(conn, score_deltas(project_id, summary, rows))


def apply_score_batch(conn: Connection, project_id: int,
                      sessions: Iterable[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]]) -> None:
    """:func:`apply_scores` for many ``(summary, rows)`` of one project, in one upsert per table."""
    total: dict[Key, dict[str, float]] = {}
    for summary, rows in sessions:
        for key, delta in score_deltas(project_id, summary, rows).items():
            into = total.get(key)
            if into is None:
                total[key] = delta
            else:
                for name in _ADDED:
                    into[name] += delta[name]
    _add(conn, total)


def apply_sessions(conn: Connection, project_id: int, sessions: Iterable[Mapping[str, Any]]) -> None:
    """Count completed sessions in the minute they ended, with their latency and cost in sketches."""
    deltas: dict[Key, dict[str, float]] = {}
    sketches: dict[Key, tuple[Any, Any]] = {}
    for session in sessions:
        key = _key(project_id, int(session["end_ns"]), session, SESSION_DIMENSION, "")
        delta = deltas.setdefault(key, dict.fromkeys(_ADDED, 0.0))
        delta["count"] += 1
        delta["weighted_count"] += 1
        if session["errors"]:
            delta["errors"] += 1
        latency, cost = sketches.setdefault(key, (new_sketch(), new_sketch()))
        # The agent's own time (its model, tool and retrieval spans), not the user's pauses between turns.
        work = session.get("work_ms")
        latency.add(max(float(work) if work is not None else (session["end_ns"] - session["start_ns"]) / 1e6, 0.0))
        cost.add(max(float(session["cost_usd"] or 0.0), 0.0))
    _add(conn, deltas)
    hourly: dict[Key, tuple[Any, Any]] = {}
    for key, (latency, cost) in sketches.items():
        hour_latency, hour_cost = hourly.setdefault(key.hour(), (new_sketch(), new_sketch()))
        hour_latency.merge(latency)
        hour_cost.merge(cost)
    for table, buckets in ((m.rollups, sketches), (m.rollups_hourly, hourly)):
        _merge_sketches(conn, table, buckets)


_KEY_COLUMNS = tuple(Key.__dataclass_fields__)


def _merge_sketches(conn: Connection, table: Any, buckets: Mapping[Key, tuple[Any, Any]]) -> None:
    """Merge sketches into their stored buckets (which exist): one read and one update per 200 buckets."""
    r = table.c
    ordered = sorted(buckets.items(), key=lambda kv: str(kv[0]))
    update_stmt = (update(table)
                   .where(*(r[name] == bindparam(f"k_{name}") for name in _KEY_COLUMNS))
                   .values(latency_sketch=bindparam("v_latency"), cost_sketch=bindparam("v_cost")))
    for i in range(0, len(ordered), 200):
        chunk = ordered[i : i + 200]
        query = select(*(r[name] for name in _KEY_COLUMNS), r.latency_sketch, r.cost_sketch).where(
            tuple_(*(r[name] for name in _KEY_COLUMNS)).in_([tuple(key.__dict__.values()) for key, _ in chunk]))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        stored = {tuple(row[: len(_KEY_COLUMNS)]): (row[-2], row[-1]) for row in conn.execute(query)}
        params = []
        for key, (latency, cost) in chunk:
            old_latency, old_cost = stored[tuple(key.__dict__.values())]
            merged_latency, merged_cost = sketch_from_bytes(old_latency), sketch_from_bytes(old_cost)
            merged_latency.merge(latency)
            merged_cost.merge(cost)
            params.append({**{f"k_{name}": value for name, value in key.__dict__.items()},
                           "v_latency": sketch_to_bytes(merged_latency), "v_cost": sketch_to_bytes(merged_cost)})
        conn.execute(update_stmt, params)


def add(conn: Connection, project_id: int, time_ns: int, labels: Mapping[str, Any], dimension: str,
        version: str, delta: Mapping[str, float]) -> None:
    """Add one increment (any of count, weighted_count, weighted_sum, ..., errors) to a series' bucket.

    Checks use it for the series they derive: an SLO's good/bad sessions, its time slices.
    """
    full = dict.fromkeys(_ADDED, 0.0)
    full.update(delta)
    _add(conn, {_key(project_id, time_ns, labels, dimension, version): full})


def _add(conn: Connection, deltas: Mapping[Key, Mapping[str, float]]) -> None:
    if not deltas:
        return
    hourly: dict[Key, dict[str, float]] = {}
    for key, delta in deltas.items():
        into = hourly.setdefault(key.hour(), dict.fromkeys(_ADDED, 0.0))
        for name in _ADDED:
            into[name] += delta[name]
    for table, rows in ((m.rollups, deltas), (m.rollups_hourly, hourly)):
        insert = insert_on_conflict(conn.dialect.name, table)
        c = table.c
        stmt = insert.on_conflict_do_update(
            index_elements=list(Key.__dataclass_fields__),
            set_={name: c[name] + insert.excluded[name] for name in _ADDED},
        )
        ordered = sorted(rows.items(), key=lambda kv: str(kv[0]))
        conn.execute(stmt, [{**key.__dict__, **delta} for key, delta in ordered])


@dataclass(frozen=True)
class Totals:
    """Sums over buckets: enough for means, standard errors and failure ratios."""

    count: float
    weighted_count: float
    weighted_sum: float
    weighted_sum_sq: float
    failures: float
    weighted_failures: float
    errors: float

    @property
    def mean(self) -> float | None:
        return self.weighted_sum / self.weighted_count if self.weighted_count else None

    @property
    def variance(self) -> float | None:
        if not self.weighted_count:
            return None
        mean = self.weighted_sum / self.weighted_count
        return max(self.weighted_sum_sq / self.weighted_count - mean * mean, 0.0)

    @property
    def failure_ratio(self) -> float | None:
        return self.weighted_failures / self.weighted_count if self.weighted_count else None


    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, ...]:
        return (self.count, self.weighted_count, self.weighted_sum, self.weighted_sum_sq, self.failures,
                self.weighted_failures, self.errors)


ZERO = Totals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
#: The label columns a series is keyed by, besides project and dimension.
SERIES_LABELS = ("service", "agent_version", "intent", "evaluator_version")


def _ranges(since_ns: int, until_ns: int) -> list[tuple[Any, int, int]]:
    """[since, until) as minute-table edges around whole hours read from the hourly table."""
    first_hour = -(-since_ns // HOUR_NS) * HOUR_NS
    last_hour = until_ns - until_ns % HOUR_NS
    if first_hour >= last_hour:
        return [(m.rollups, since_ns, until_ns)]
    parts: list[tuple[Any, int, int]] = [(m.rollups_hourly, first_hour, last_hour)]
    if since_ns < first_hour:
        parts.append((m.rollups, since_ns, first_hour))
    if last_hour < until_ns:
        parts.append((m.rollups, last_hour, until_ns))
    return parts


def series_totals(conn: Connection, project_id: int, dimension: str, *, since_ns: int, until_ns: int,
                  group_by: tuple[str, ...] = SERIES_LABELS, **labels: str) -> dict[tuple[str, ...], Totals]:
    """Sums of one dimension over [since, until) per combination of the ``group_by`` label columns.

    Whole hours are read from the hourly table and the edges from the minute table, so a window
    costs a bucket per hour (plus at most two hours of minutes) per series.
    """
    out: dict[tuple[str, ...], Totals] = {}
    names = tuple(sorted(labels))
    width = len(group_by)
    for table, lo, hi in _ranges(since_ns, until_ns):
        query = _totals_query(table, group_by, names)
        params = {"b_project": project_id, "b_dimension": dimension, "b_lo": lo, "b_hi": hi}
        params.update({f"b_label_{name}": labels[name] for name in names})
        for row in conn.execute(query, params):
            values = tuple(row)
            if values[width] is None:
                continue
            key = tuple(str(v) for v in values[:width])
            found = Totals(*(float(v) for v in values[width:]))
            out[key] = out[key] + found if key in out else found
    return out


@functools.cache
def _totals_query(table: Any, group_by: tuple[str, ...], names: tuple[str, ...]) -> Any:
    """The statement of series_totals for a table, group_by and label names: built once, so a check's
    many reads cost their SQL, not the building of the same expression again."""
    r = table.c
    where = [r.project_id == bindparam("b_project"), r.dimension == bindparam("b_dimension"),
             r.minute_ns >= bindparam("b_lo"), r.minute_ns < bindparam("b_hi")]
    where += [r[name] == bindparam(f"b_label_{name}") for name in names]
    columns = [r[name] for name in group_by]
    query = select(*columns, *(func.sum(r[name]) for name in _ADDED)).where(*where)
    return query.group_by(*columns) if columns else query


def hourly_totals(conn: Connection, project_id: int, dimension: str, *, since_ns: int, until_ns: int,
                  group_by: tuple[str, ...] = SERIES_LABELS) -> dict[tuple[str, ...], dict[int, Totals]]:
    """Per series, the sums of each whole event-time hour in [since, until) (hour start -> Totals)."""
    r = m.rollups_hourly.c
    columns = [r[name] for name in group_by]
    query = (select(*columns, r.minute_ns, *(func.sum(r[name]) for name in _ADDED))
             .where(r.project_id == project_id, r.dimension == dimension, r.minute_ns >= since_ns,
                    r.minute_ns < until_ns)
             .group_by(*columns, r.minute_ns))
    out: dict[tuple[str, ...], dict[int, Totals]] = {}
    for row in conn.execute(query):
        values = tuple(row)
        key = tuple(str(v) for v in values[: len(columns)])
        out.setdefault(key, {})[int(values[len(columns)])] = Totals(*(float(v) for v in values[len(columns) + 1:]))
    return out


def totals(conn: Connection, project_id: int, dimension: str, *, since_ns: int, until_ns: int,
           evaluator_version: str | None = None, **labels: str) -> Totals:
    """Sum the buckets of one dimension over [since, until), optionally narrowed by version and labels."""
    if evaluator_version is not None:
        labels["evaluator_version"] = evaluator_version
    found = series_totals(conn, project_id, dimension, since_ns=since_ns, until_ns=until_ns, group_by=(), **labels)
    return found.get((), ZERO)


#: The sketch column of each sketched metric (the session sketch of latency holds the agent's work time).
SKETCHES = {"work_ms": "latency_sketch", "cost_usd": "cost_sketch"}


def merged_sketches(conn: Connection, project_id: int, metric: str, *, since_ns: int, until_ns: int,
                    group_by: tuple[str, ...] = (), where: Mapping[str, Iterable[str]] | None = None
                    ) -> dict[tuple[str, ...], Any]:
    """Per ``group_by`` values, the ``_session`` sketches of ``metric`` (work_ms or cost_usd) over [since, until)
    merged into one, narrowed to label values in ``where`` (whole hours from the hourly table)."""
    merged: dict[tuple[str, ...], Any] = {}
    for table, lo, hi in _ranges(since_ns, until_ns):
        r = table.c
        column = r[SKETCHES[metric]]
        narrow = [r.project_id == project_id, r.dimension == SESSION_DIMENSION, r.minute_ns >= lo, r.minute_ns < hi]
        narrow += [r[name].in_(list(values)) for name, values in (where or {}).items()]
        for row in conn.execute(select(*(r[name] for name in group_by), column).where(*narrow)):
            values = tuple(row)
            if not values[-1]:
                continue
            key = tuple(str(v) for v in values[:-1])
            if key not in merged:
                merged[key] = new_sketch()
            merged[key].merge(_decoded(bytes(values[-1])))
    return merged


def quantile(conn: Connection, project_id: int, metric: str, q: float, *, since_ns: int, until_ns: int,
             **labels: str) -> float | None:
    """A quantile of the agent's work time per session (``work_ms``) or its cost (``cost_usd``) over
    [since, until), from the merged sketches."""
    merged = merged_sketches(conn, project_id, metric, since_ns=since_ns, until_ns=until_ns,
                             where={name: (value,) for name, value in labels.items()}).get(())
    result = merged.get_quantile_value(q) if merged is not None and merged.count else None
    return None if result is None else float(result)
