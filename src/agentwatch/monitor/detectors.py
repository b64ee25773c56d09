"""The detectors the monitor runs at each event-time tick, behind one protocol.

A :class:`Detector` says how often it runs (``every``: each fast tick, each
check interval or each event-time hour), which ``(kind, rule)`` pairs it
decides, and answers one :class:`Verdict` per :meth:`~Detector.check`: the
conditions that hold, the pairs it decided at this tick (a firing alert of a
decided pair that no longer holds is resolved) and the firing alerts it could
not judge (left as they are). The monitor's tick is a loop over its detectors
in order; a detector may read what the ones before it found at the same tick
(:attr:`Tick.candidates`, :attr:`Tick.windows`). A new kind of check is one
class here and one line in :func:`default_detectors`.

>>> sorted(RareEvents.decides)
[('rare_event', 'failure')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, Sequence

from sqlalchemy import Connection

from agentwatch.alert.types import Candidate
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.monitor import clusters, events, slo
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.drift import DriftDetector

Every = Literal["tick", "check", "hour"]


class Firing(NamedTuple):
    """A firing alert, as a tick's checks and inhibition need it."""

    kind: str
    rule: str
    key: str
    evaluator: str


@dataclass
class Tick:
    """One event-time tick being checked, in the monitor's transaction."""

    conn: Connection
    project_id: int
    tick_ns: int
    #: The monitor's state, saved with the tick (hold timers, CUSUM sums, first-seen times).
    state: dict[str, Any]
    catalogue: Catalogue
    firing: list[Firing]
    #: Services past the drift and cluster warm-ups.
    drift_warm: set[str]
    cluster_warm: set[str]
    #: The tick is a multiple of the check interval / of an hour.
    slow: bool
    hourly: bool
    #: What the detectors before this one found at this tick.
    candidates: list[Candidate] = field(default_factory=list)
    #: Each evaluator's drift window totals at this tick (the drift detector fills it).
    windows: dict[str, Any] = field(default_factory=dict)

    def runs(self, every: Every) -> bool:
        return every == "tick" or (every == "check" and self.slow) or (every == "hour" and self.hourly)


@dataclass
class Verdict:
    """What one detector answers at one tick."""

    candidates: list[Candidate]
    #: The (kind, rule) pairs decided at this tick.
    decided: set[tuple[str, str]]
    #: Dedup keys of firing alerts this detector could not judge at this tick.
    keep: set[str] = field(default_factory=set)


class Detector(Protocol):
    """One kind of check."""

    @property
    def every(self) -> Every:
        """How often it runs: each fast tick, each check interval or each event-time hour."""
        ...

    @property
    def decides(self) -> frozenset[tuple[str, str]]:
        """Every (kind, rule) pair this detector may decide."""
        ...

    def check(self, tick: Tick) -> Verdict:
        """The conditions holding at ``tick`` (data strictly before it counts)."""
        ...


class NewClusters:
    """Novel failure templates every fast tick (when young templates exist); surges of known ones each interval."""

    every: ClassVar[Every] = "tick"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("new_cluster", "novel"), ("new_cluster", "surge")})

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config

    def check(self, tick: Tick) -> Verdict:
        found: list[Candidate] = []
        if tick.slow or clusters.has_young_templates(tick.conn, tick.project_id, tick.tick_ns):
            found = clusters.check(tick.conn, tick.project_id, tick.tick_ns, self.config.clusters, tick.cluster_warm,
                                   surges=tick.slow)
        decided = {("new_cluster", "novel")} | ({("new_cluster", "surge")} if tick.slow else set())
        return Verdict(found, decided)


class RareEvents:
    """A failure of a paging evaluator, every fast tick."""

    every: ClassVar[Every] = "tick"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("rare_event", "failure")})

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config

    def check(self, tick: Tick) -> Verdict:
        return Verdict(events.rare_events(tick.conn, tick.project_id, tick.tick_ns, tick.catalogue.scored,
                                          self.config), set(self.decides))


class DriftZ:
    """Each evaluator's windowed mean against its rolling baseline, each check interval."""

    every: ClassVar[Every] = "check"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("drift", "z")})

    def __init__(self, drift: DriftDetector) -> None:
        self.drift = drift

    def check(self, tick: Tick) -> Verdict:
        found: list[Candidate] = []
        firing_z = {f.key for f in tick.firing if (f.kind, f.rule) == ("drift", "z")}
        for spec in tick.catalogue.scored:
            candidates, window = self.drift.check(tick.conn, tick.project_id, tick.tick_ns, spec, tick.state,
                                                  tick.drift_warm, firing_z)
            tick.windows[spec.name] = window
            found += candidates
        return Verdict(found, set(self.decides))


class DriftCusum:
    """Slow drift: hourly CUSUM of each pooled series, quiet where the z test already pages."""

    every: ClassVar[Every] = "hour"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("drift", "cusum")})

    def __init__(self, drift: DriftDetector) -> None:
        self.drift = drift

    def check(self, tick: Tick) -> Verdict:
        found: list[Candidate] = []
        keep: set[str] = set()
        for spec in tick.catalogue.scored:
            paged = frozenset((c.labels["service"], c.labels["agent_version"], c.evaluator_version)
                              for c in [*tick.candidates, *found]
                              if (c.kind, c.rule, c.evaluator) == ("drift", "z", spec.name))
            candidates, kept = self.drift.cusum(tick.conn, tick.project_id, tick.tick_ns, spec, tick.state,
                                                tick.drift_warm, paged)
            found += candidates
            keep |= kept
        return Verdict(found, set(self.decides), keep)


class BurnRates:
    """Multi-window burn rates of the SLOs, each check interval."""

    every: ClassVar[Every] = "check"

    def __init__(self, slos: Sequence[Any], check_interval_s: float) -> None:
        self.slos = tuple(slos)
        self.check_interval_s = check_interval_s
        self.decides = frozenset(("burn_rate", spec.rule) for spec in self.slos)

    def check(self, tick: Tick) -> Verdict:
        found, checked = slo.check(tick.conn, tick.project_id, tick.tick_ns, self.slos, tick.catalogue,
                                   check_interval_s=self.check_interval_s)
        return Verdict(found, checked)


class EvaluatorErrors:
    """Evaluator versions failing to evaluate too often, from the windows drift read at this tick."""

    every: ClassVar[Every] = "check"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("evaluator_errors", "error_ratio")})

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config

    def check(self, tick: Tick) -> Verdict:
        return Verdict(events.evaluator_errors(tick.windows, tick.catalogue.scored, self.config), set(self.decides))


class Calibration:
    """Judges drifting from human labels, each check interval (and when labels arrive)."""

    every: ClassVar[Every] = "check"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("calibration", "agreement")})

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config

    def check(self, tick: Tick) -> Verdict:
        return Verdict(events.calibration(tick.conn, tick.project_id, tick.tick_ns, tick.catalogue.scored,
                                          self.config), set(self.decides))


class NoData:
    """Services and evaluators gone silent, each check interval."""

    every: ClassVar[Every] = "check"
    decides: ClassVar[frozenset[tuple[str, str]]] = frozenset({("no_data", "service"), ("no_data", "evaluator")})

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config

    def check(self, tick: Tick) -> Verdict:
        return Verdict(events.no_data(tick.conn, tick.project_id, tick.tick_ns, self.config, tick.state.get("since"),
                                      tick.state["first_seen"]), set(self.decides))


def default_detectors(config: MonitorConfig, slos: Sequence[Any], drift: DriftDetector) -> list[Detector]:
    """The monitor's detectors in the order a tick runs them (drift z before CUSUM and evaluator errors)."""
    detectors: list[Detector] = [NewClusters(config), RareEvents(config), DriftZ(drift), DriftCusum(drift)]
    if slos:
        detectors.append(BurnRates(slos, config.check_interval_s))
    detectors += [EvaluatorErrors(config), Calibration(config), NoData(config)]
    return detectors
