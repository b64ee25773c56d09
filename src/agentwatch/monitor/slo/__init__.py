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

- :mod:`agentwatch.monitor.slo.spec`: :class:`SloSpec`, the burn-rate window
  pairs, and :func:`load_slos`, which validates the ``slos`` section.
- :mod:`agentwatch.monitor.slo.record`: writes session and slice verdicts
  into the series ``slo:<name>`` and ``slice:<name>``.
- :mod:`agentwatch.monitor.slo.series`: reads a series' counts over windows
  ending at a tick, and the slice values.
- :mod:`agentwatch.monitor.slo.burn`: burn rates and :func:`check`, the alert
  decision at a tick, with each alert's summary and example sessions.
- :mod:`agentwatch.monitor.slo.report`: :func:`status`, per SLO and series,
  for ``GET /api/v1/slos`` and the UI.
"""

from __future__ import annotations

from agentwatch.monitor.slo.burn import check
from agentwatch.monitor.slo.record import record_sessions
from agentwatch.monitor.slo.report import status
from agentwatch.monitor.slo.spec import SloSpec, load_slos

__all__ = [
    "SloSpec",
    "check",
    "load_slos",
    "record_sessions",
    "status",
]
