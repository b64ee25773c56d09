"""SLOs in three layers, their error budgets, and multiwindow multi-burn-rate alerts.

The ``slos`` section of ``agentwatch.yaml`` (keys in ``docs/slos.md``) declares
objectives of three layers:

- **system**: per-session latency, errors or cost against a threshold. The
  good/bad verdict of each completed session is added to the rollup series
  ``slo:<name>`` by :func:`record_sessions`, in the completion transaction.
- **objective**: an evaluator's failure ratio (``failure_ratio_below`` /
  ``objective``: bad = Horvitz-Thompson weighted failures, valid = weighted
  scored sessions) or its mean score (``mean_at_least``).
- **failure_mode**: an evaluator's failure rate, or the share of completed
  sessions that show a failure template (``rate_below``).

Burn rates follow the SRE Workbook (``methods.md`` section 1): BR_w = e_w / B,
an alert fires iff both the long and the short window burn faster than
BR* = f * T / L (14.4, 6, 3 and 1 for a 30-day period), and a page also needs
at least three weighted bad events in the long window.

Mean objectives, and ratio objectives whose 1 / B cannot reach 14.4, are
**time-slice** SLOs: at every check tick the slice window's value is judged
(bad only with evidence: a one-sided 95% bound beyond the target) and the
verdict is added to the series ``slice:<name>`` as one event; burn rates then
run over slices with B = 1 - ``slices``.

Everything reads rollup buckets (hours from the hourly table), never the
sessions, except the handful of example ids an alert carries.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, and_, bindparam, case, func, select

from agentwatch.errors import ConfigError
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.monitor import rollups
from agentwatch.monitor.base import Candidate
from agentwatch.settings import config_line, parse_duration
from agentwatch.store import models as m

LAYERS = ("system", "objective", "failure_mode")
#: latency_ms: the session's duration, pauses between turns included; work_ms: the agent's own time
#: (the summed durations of its model, tool, retrieval and embedding spans).
METRICS = ("latency_ms", "work_ms", "error", "cost_usd")
#: Metrics with a quantile sketch per rollup bucket (the session sketch of latency holds work_ms).
SKETCHED = ("work_ms", "cost_usd")
#: The labels an SLO may filter on and group by.
LABELS = ("service", "agent_version", "intent")
DEFAULT_PERIOD_S = 30 * 86400.0
MIN_PERIOD_S = 3 * 86400.0
DEFAULT_SLICE_WINDOW_S = 3600.0
DEFAULT_MIN_N = 20.0
DEFAULT_SLICES = 0.99
DEFAULT_EVIDENCE = 0.95
#: A page needs at least this many weighted bad events in its long window (the min-count gate) ...
MIN_BAD_EVENTS = 3.0
#: ... or, for a time-slice SLO, this many bad slices.
MIN_BAD_SLICES = 2.0
#: One-sided 95% normal quantile: a slice is bad only when its bound is beyond the target.
Z_ONE_SIDED_95 = 1.645
#: Window over which status() reports latency and cost quantiles.
QUANTILE_WINDOW_S = 3600.0
#: Most example sessions an alert carries.
MAX_EXAMPLES = 5
NS = 1_000_000_000


@dataclass(frozen=True)
class BurnWindow:
    """One long/short window pair of the multiwindow alert, spending ``budget_fraction`` of the budget."""

    severity: str
    long_s: float
    short_s: float
    budget_fraction: float

    def factor(self, period_s: float) -> float:
        """BR* = f * T / L (14.4, 6, 3, 1 for T = 30 days)."""
        return round(self.budget_fraction * period_s / self.long_s, 9)


#: The SRE Workbook's pairs for a 30-day period, most urgent first (Sloth's google-30d).
BURN_WINDOWS = (
    BurnWindow("page", 3600.0, 300.0, 0.02),
    BurnWindow("page", 6 * 3600.0, 1800.0, 0.05),
    BurnWindow("ticket", 86400.0, 7200.0, 0.10),
    BurnWindow("ticket", 3 * 86400.0, 6 * 3600.0, 0.10),
)
#: Every window a check reads, shortest first.
ALERT_WINDOWS_S = tuple(sorted({w.long_s for w in BURN_WINDOWS} | {w.short_s for w in BURN_WINDOWS}))


def window_label(seconds: float) -> str:
    """``300`` -> ``"5m"``, ``3600`` -> ``"1h"``, ``259200`` -> ``"3d"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class SloSpec:
    """One SLO as configured."""

    name: str
    layer: str
    #: system: latency_ms | error | cost_usd.
    metric: str = ""
    #: system latency (ms) or cost (USD): a session is good iff its value <= threshold.
    threshold: float | None = None
    evaluator: str = ""
    #: failure_mode: a substring of a failure template (case-insensitive).
    template: str = ""
    #: Target share of good events (system SLOs and ratio objectives; None for mean objectives).
    objective: float | None = None
    #: System quantile SLOs: the slice window's quantile of the metric must stay within the threshold.
    quantile: float | None = None
    #: Ratio objectives and failure modes: the failure ratio (or rate) limit, 1 - objective.
    limit: float | None = None
    #: Mean objectives: the slice window's mean score must stay at least this.
    mean_at_least: float | None = None
    #: Time slices: the window each slice judges, the least scored sessions a slice needs,
    #: and the target share of good slices.
    window_s: float = DEFAULT_SLICE_WINDOW_S
    min_n: float = DEFAULT_MIN_N
    slices: float = DEFAULT_SLICES
    #: One-sided confidence a slice needs to be bad (its bound beyond the target): 0.95, or 0.99 for many series.
    evidence: float = DEFAULT_EVIDENCE
    filter: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    period_s: float = DEFAULT_PERIOD_S
    owner: str | None = None

    @property
    def rule(self) -> str:
        return f"slo:{self.name}"

    @property
    def evidence_z(self) -> float:
        return NormalDist().inv_cdf(self.evidence)

    @property
    def kind(self) -> str:
        """``system``, ``quantile`` (a system metric's quantile), ``ratio`` (an evaluator's failures), ``mean``
        or ``template``."""
        if self.layer == "system":
            return "quantile" if self.quantile is not None else "system"
        if self.template:
            return "template"
        return "mean" if self.mean_at_least is not None else "ratio"

    @property
    def sliced(self) -> bool:
        """Judged by time slices: mean objectives, and ratios whose 1 / B cannot reach the fastest page."""
        if self.kind in ("mean", "quantile"):
            return True
        if self.kind == "system" or self.limit is None:
            return False
        return self.limit <= 0 or 1.0 / self.limit < BURN_WINDOWS[0].factor(self.period_s)

    @property
    def budget(self) -> float:
        """B: the share of bad events (or, sliced, of bad slices) the period allows."""
        if self.sliced:
            budget = 1.0 - self.slices
        elif self.kind == "system":
            budget = 1.0 - float(self.objective or 0.0)
        else:
            budget = float(self.limit or 0.0)
        return round(budget, 12)

    @property
    def target(self) -> float:
        """The target share of good events (or of good slices)."""
        return 1.0 - self.budget

    @property
    def dimension(self) -> str:
        """The alert's dimension: the evaluator, the system metric, or ``template``."""
        if self.kind in ("system", "quantile"):
            return self.metric
        return "template" if self.kind == "template" else self.evaluator

    @property
    def series_dimension(self) -> str:
        """The rollup series the burn rates read (a template SLO's valid events: the completed sessions)."""
        if self.sliced:
            return f"slice:{self.name}"
        if self.kind == "system":
            return f"slo:{self.name}"
        return rollups.SESSION_DIMENSION if self.kind == "template" else self.evaluator

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all((labels.get(name) or "") in values for name, values in self.filter.items())


# -- configuration ----------------------------------------------------------

_COMMON = {"name", "layer", "filter", "group_by", "period", "owner"}
_SLICE_KEYS = {"window", "min_n", "slices", "evidence"}
_KEYS = {
    "system": _COMMON | _SLICE_KEYS | {"metric", "threshold", "objective", "quantile"},
    "objective": _COMMON | _SLICE_KEYS | {"evaluator", "mean_at_least", "failure_ratio_below", "objective"},
    "failure_mode": _COMMON | _SLICE_KEYS | {"evaluator", "template", "rate_below"},
}


def load_slos(sections: Mapping[str, Any], config_path: str | None = None,
              catalogue: Catalogue | None = None) -> tuple[SloSpec, ...]:
    """Validate the ``slos`` section; errors name the file, the line and the key.

    With a ``catalogue``, every evaluator an SLO names must be declared in it.
    """
    where = config_path or "agentwatch.yaml"
    entries = sections.get("slos") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}, line {config_line(sections, 'slos')}, key slos: expected a list of SLOs")
    specs: list[SloSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        spec = _spec(where, index, entry, sections, catalogue)
        if spec.name in seen:
            raise ConfigError(f"{where}, line {config_line(entry, 'name')}, key slos[{index}].name: {spec.name!r} is "
                              "declared twice")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _spec(where: str, index: int, entry: Any, sections: Mapping[str, Any], catalogue: Catalogue | None) -> SloSpec:
    at = f"slos[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}, line {config_line(sections, 'slos')}, key {at}: expected a mapping with name "
                          "and layer")

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{where}, line {config_line(entry, key)}, key {at}.{key}: {message}")

    def share(key: str, *, required: bool = False, default: float | None = None) -> float | None:
        if key not in entry:
            if required:
                raise fail(key, "missing: expected a share between 0 and 1, e.g. 0.99")
            return default
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise fail(key, f"expected a share between 0 and 1 (exclusive), got {value!r}")
        return float(value)

    def number(key: str, default: float | None = None, *, low: float = 0.0) -> float | None:
        if key not in entry:
            return default
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
            raise fail(key, f"expected a number >= {low:g}, got {value!r}")
        return float(value)

    def duration(key: str, default: float) -> float:
        if key not in entry:
            return default
        try:
            seconds = parse_duration(entry[key])
        except ValueError as exc:
            raise fail(key, str(exc)) from exc
        if seconds < 60:
            raise fail(key, f"expected at least 1m (buckets are minutes), got {entry[key]!r}")
        return seconds

    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise fail("name", f"expected a name without spaces, e.g. refund-latency, got {name!r}")
    layer = entry.get("layer")
    if layer not in LAYERS:
        raise fail("layer", f"expected one of {', '.join(LAYERS)}, got {layer!r}")
    unknown = sorted(set(entry) - _KEYS[layer], key=str)
    if unknown:
        key = str(unknown[0])
        hint = (" (window, min_n and slices are for objective and failure_mode SLOs)" if key in _SLICE_KEYS
                else "")
        raise fail(key, f"unknown key for a {layer} SLO (known: {', '.join(sorted(_KEYS[layer]))}){hint}")
    owner = entry.get("owner")
    if owner is not None and not isinstance(owner, str):
        raise fail("owner", "expected a string")
    filters = _filter(entry, fail)
    group_by = _group_by(entry, fail)
    fields: dict[str, Any] = {
        "name": name, "layer": layer, "filter": filters, "group_by": group_by, "owner": owner,
        "period_s": duration("period", DEFAULT_PERIOD_S),
    }
    if fields["period_s"] < MIN_PERIOD_S:
        raise fail("period", f"expected at least 3d (the longest alert window; 28d or 30d is usual), got "
                             f"{entry['period']!r}")
    if layer == "system":
        metric = entry.get("metric")
        if metric not in METRICS:
            raise fail("metric", f"expected one of {', '.join(METRICS)}, got {metric!r}")
        if metric == "error":
            if "threshold" in entry:
                raise fail("threshold", "an error SLO takes no threshold (a session is bad iff it has an error span)")
        elif "threshold" not in entry:
            raise fail("threshold", f"missing: a {metric} SLO needs the threshold a good session stays within")
        if "quantile" in entry:
            if metric not in SKETCHED:
                raise fail("quantile", f"a quantile SLO reads the {' or '.join(SKETCHED)} sketches, not {metric!r}")
            if "objective" in entry:
                raise fail("objective", "a quantile SLO is judged in time slices: give slices (the share of good "
                                        "slices, default 0.99), not objective")
            fields.update(metric=metric, threshold=number("threshold"), quantile=share("quantile", required=True),
                          window_s=duration("window", DEFAULT_SLICE_WINDOW_S),
                          min_n=number("min_n", DEFAULT_MIN_N, low=1.0),
                          slices=share("slices", default=DEFAULT_SLICES),
                          evidence=share("evidence", default=DEFAULT_EVIDENCE))
            return SloSpec(**fields)
        given = sorted(_SLICE_KEYS & set(entry))
        if given:
            raise fail(given[0], "window, min_n and slices apply to time-slice SLOs only (here: with quantile)")
        fields.update(metric=metric, threshold=number("threshold"), objective=share("objective", required=True))
        return SloSpec(**fields)
    evaluator = entry.get("evaluator")
    template = entry.get("template")
    if layer == "failure_mode" and (evaluator is None) == (template is None):
        raise fail("evaluator", "expected exactly one of evaluator (its failure rate) or template (a failure "
                                "template's share of sessions)")
    if template is not None:
        if not isinstance(template, str) or not template.strip():
            raise fail("template", "expected a substring of a failure template")
        for key, names in (("group_by", group_by), ("filter", tuple(filters))):
            if any(n != "service" for n in names):
                raise fail(key, "a template SLO can only filter and group by service (template hits carry no "
                                "agent_version or intent)")
        fields["template"] = template
    else:
        if not isinstance(evaluator, str) or not evaluator.strip():
            raise fail("evaluator", "expected the name of an evaluator in the evaluators section")
        if catalogue is not None and catalogue.by_name(evaluator) is None:
            known = ", ".join(s.name for s in catalogue.specs) or "none declared"
            raise fail("evaluator", f"no evaluator named {evaluator!r} (known: {known})")
        fields["evaluator"] = evaluator
    if layer == "objective":
        given = [k for k in ("mean_at_least", "failure_ratio_below", "objective") if k in entry]
        if len(given) != 1:
            key = given[1] if len(given) > 1 else "mean_at_least"
            raise fail(key, "expected exactly one of mean_at_least (a mean-score objective), failure_ratio_below "
                            "or objective (a ratio objective)")
        if given[0] == "mean_at_least":
            fields["mean_at_least"] = number("mean_at_least")
            if not 0.0 <= fields["mean_at_least"] <= 1.0:
                raise fail("mean_at_least", f"expected a score from 0 to 1, got {entry['mean_at_least']!r}")
        elif given[0] == "objective":
            fields["objective"] = share("objective")
            fields["limit"] = 1.0 - fields["objective"]
        else:
            fields["limit"] = share("failure_ratio_below")
    else:
        fields["limit"] = share("rate_below", required=True)
    if fields.get("objective") is None and fields.get("limit") is not None:
        fields["objective"] = 1.0 - fields["limit"]
    fields.update(window_s=duration("window", DEFAULT_SLICE_WINDOW_S),
                  min_n=number("min_n", DEFAULT_MIN_N, low=1.0),
                  slices=share("slices", default=DEFAULT_SLICES),
                  evidence=share("evidence", default=DEFAULT_EVIDENCE))
    spec = SloSpec(**fields)
    if not spec.sliced:
        given_slice_keys = sorted(_SLICE_KEYS & set(entry))
        if given_slice_keys:
            raise fail(given_slice_keys[0], "window, min_n and slices apply to time-slice SLOs only: mean objectives, "
                                            "and ratios whose limit is above 1/14.4 (6.94%)")
    return spec


def _filter(entry: Mapping[str, Any], fail: Any) -> dict[str, tuple[str, ...]]:
    raw = entry.get("filter") or {}
    if not isinstance(raw, Mapping):
        raise fail("filter", f"expected a mapping of {', '.join(LABELS)}")
    out: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if key not in LABELS:
            raise fail("filter", f"unknown filter {key!r} (known: {', '.join(LABELS)})")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            raise fail("filter", f"{key}: expected a string or a list of strings")
        out[str(key)] = tuple(items)
    return out


def _group_by(entry: Mapping[str, Any], fail: Any) -> tuple[str, ...]:
    raw = entry.get("group_by") or []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or any(v not in LABELS for v in items) or len(set(items)) != len(items):
        raise fail("group_by", f"expected a list of distinct labels among {', '.join(LABELS)}, got {raw!r}")
    return tuple(str(v) for v in items)


# -- recording system SLIs ----------------------------------------------------

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


# -- reading windows ----------------------------------------------------------

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


def _labels(spec: SloSpec, key: SeriesKey) -> dict[str, str]:
    labels = {name: values[0] for name, values in spec.filter.items() if len(values) == 1}
    labels.update(zip(spec.group_by, key, strict=True))
    return labels


# -- checking at a tick -------------------------------------------------------

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


# -- status for GET /api/v1/slos ------------------------------------------------

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
