"""What an SLO is: its specification, the burn-rate window pairs, and the ``slos`` section.

:class:`SloSpec` is one configured objective; its properties derive what the
checks need (its kind, whether it is judged in time slices, its budget B, the
rollup series its burn rates read). :data:`BURN_WINDOWS` holds the long/short
window pairs of the multiwindow alert: a ratio SLO whose 1 / B cannot reach the
fastest page's factor is judged in time slices. :func:`load_slos` validates the
``slos`` section of ``agentwatch.yaml`` into specs, with errors that name the
file, the line and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping

from agentwatch.errors import ConfigError
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.settings import Section, config_line, parse_duration
from agentwatch.store import rollups

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

    fail = Section(where, entry, at).error

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
