"""The ``date_window`` rule: a tool called at most ``max_days`` days after a date an earlier call returned.

``date_window``
    Each successful call of ``tool`` (status not ERROR) comes at most
    ``max_days`` days after a date read from an earlier call: ``date_from``
    (``{tool, field, match?}``) names the latest successful call of that tool
    started before this one, in any turn (``match`` lists argument paths both
    calls must agree on, e.g. ``[order_id]``), and the path of the date in its
    result (``delivered_on``). The date is an ISO date or date-time (an offset
    is converted to UTC, a naive one taken as UTC); the call's own date is its
    start time's UTC date, and a call more than ``max_days`` days after the
    date breaks the rule (a refund of an order delivered 31 days earlier, with
    ``max_days: 30``). ``on_missing?``: what a missing source call or a
    missing or unreadable date means: ``fail`` (default), ``pass`` or
    ``error``, as for ``numeric_bound``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import (
    _MISSING,
    BoundSource,
    ParamReader,
    Rule,
    _at,
    _no_source,
    _source,
    _source_call,
    _Unevaluable,
    listing,
    shorten,
)
from agentwatch.evaluate.session import SessionView

__all__ = ["DateWindow", "DateWindowParams"]


@dataclass(frozen=True, slots=True)
class DateWindowParams:
    tool: str
    date_from: BoundSource
    max_days: int
    on_missing: str = "fail"


def _date(value: Any) -> date | None:
    """The UTC date of an ISO date or date-time string (``2025-11-02``, ``2025-11-02T17:30:00+02:00``)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


class DateWindow(Rule):
    """A tool called at most ``max_days`` days after a date an earlier call returned (a refund window)."""

    name = "date_window"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tool", "date_from", "max_days", "on_missing"))
        tool = p.string("tool", required=True)
        raw_from = p.mapping("date_from", required=True)
        p.required("max_days")
        max_days = p.integer("max_days")
        assert tool is not None and raw_from is not None and max_days is not None
        self.params = DateWindowParams(
            tool=tool, date_from=_source(p, "date_from", raw_from), max_days=max_days,
            on_missing=p.string("on_missing", choices=("fail", "pass", "error")) or "fail",
        )

    def check(self, session: SessionView) -> EvalResult:
        params, source = self.params, self.params.date_from
        calls = session.tool_calls
        mine = [c for c in calls if c.name == params.tool and c.success]
        if not mine:
            return EvalResult.ok(1.0, reason=f"no successful call of {params.tool}")
        label = ".".join(source.field)
        problems: list[str] = []
        missing: list[str] = []
        for call in mine:
            what = f"{call.name} (span {call.span_id})"
            if source.match:
                what += " for " + ", ".join(f"{'.'.join(path)} {shorten(_shown(_at(call.arguments, path)), 60)}"
                                             for path in source.match)
            latest = _source_call(source, call, calls)
            if latest is None:
                missing.append(f"{what}: {_no_source(source)}")
                continue
            raw = _at(latest.result, source.field)
            since = _date(raw)
            if since is None:
                found = "nothing" if raw is _MISSING else repr(shorten(_shown(raw), 60))
                missing.append(f"{what}: no date at {source.tool}.{label} (span {latest.span_id}), found {found}")
                continue
            on = datetime.fromtimestamp(call.start_ns // 1_000_000_000, UTC).date()
            days = (on - since).days
            if days > params.max_days:
                problems.append(f"{what}: {label} {since.isoformat()} ({source.tool}, span {latest.span_id}), "
                                f"{days} days before the call on {on.isoformat()}; limit {params.max_days}")
        if missing:
            if params.on_missing == "error":
                raise _Unevaluable(listing(missing))
            if params.on_missing == "fail":
                problems.extend(missing)
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        skipped = f" ({len(missing)} without a date, on_missing: pass)" if missing else ""
        return EvalResult.ok(1.0, reason=f"{len(mine)} call(s) of {params.tool} within {params.max_days} days of "
                                         f"{source.tool}.{label}{skipped}")


def _shown(value: Any) -> Any:
    return "(missing)" if value is _MISSING else value
