"""The dashboard's pages: server-rendered HTML on the API's own queries.

Each page handler resolves the project the way the API does (the key, sent
as a header or kept in the dashboard's HttpOnly cookie), reads through the
functions the API handlers call (sessions and spans from the store, scores
and evaluators, alerts and silences, SLO status, cluster templates), plus the
rollup reads of :mod:`agentwatch.ui.queries`, and renders a Jinja2
template. "Now" is event time: the monitor's last tick, else the newest
session, so a replayed week reads as if it were live.

Forms (acknowledge, silence, sign in) post back to the dashboard, which
checks that the request came from its own pages (the ``Origin`` header)
and runs the same store functions as the API's POST handlers.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agentwatch.alert import store as alert_store
from agentwatch.alert.types import KINDS, alert_dict, silence_dict
from agentwatch.api.feedback import create_label, review_items, run_json
from agentwatch.api.views import score_json, session_json, span_tree
from agentwatch.auth import token_from_headers
from agentwatch.errors import AgentwatchError, BadRequest, NotFound, Unauthorized
from agentwatch.feedback import calibration, datasets, review
from agentwatch.monitor import clusters as cluster_store
from agentwatch.monitor import drift
from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings, parse_duration
from agentwatch.store import evaluations, labels
from agentwatch.store.models import utcnow
from agentwatch.store.rollups import HOUR_NS, MINUTE_NS, SESSION_DIMENSION
from agentwatch.store.store import SessionFilter
from agentwatch.ui import charts, queries

NS = 1_000_000_000
#: The HttpOnly cookie that keeps the key the dashboard was given.
COOKIE = "agentwatch_key"
#: Time ranges offered, and the bucket each chart of that range is drawn in.
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600 * NS, 5 * MINUTE_NS),
    "6h": (6 * 3600 * NS, 15 * MINUTE_NS),
    "24h": (24 * 3600 * NS, HOUR_NS),
    "7d": (7 * 24 * 3600 * NS, 6 * HOUR_NS),
    "30d": (30 * 24 * 3600 * NS, 24 * HOUR_NS),
}
DEFAULT_RANGE = "24h"
#: The drift baseline: the week before the window (methods.md §2).
BASELINE_NS = 7 * 24 * 3600 * NS
#: Half-width of the baseline band, in standard errors of a bucket of that size.
BAND_Z = 3.0
#: Buckets with fewer scored sessions get no band (its width would say nothing).
BAND_MIN_N = 5
PAGE_SIZE = 50
SILENCE_DURATIONS = ("1h", "4h", "12h", "24h")
REVIEW_PAGE = 20
#: The review page's verdicts, by the key that gives each.
REVIEW_KEYS = (("1", "correct"), ("2", "real_failure"), ("3", "false_positive"), ("4", "false_negative"),
               ("5", "edge_case"))
#: The filters every page keeps in its links.
SCOPE_PARAMS = ("project", "service", "agent_version", "range")


@dataclass
class Scope:
    """Who is looking at which slice of time: the request's project, filters and event-time range."""

    request: Request
    project_id: int
    project: str
    projects: list[str]
    keys_required: bool
    now_ns: int
    range: str
    service: str | None
    agent_version: str | None
    ticked: bool
    #: Whether the project has any session at all (else the pages say how to send some).
    has_sessions: bool = True
    choices: dict[str, list[str]] = field(default_factory=dict)

    @property
    def span_ns(self) -> int:
        return RANGES[self.range][0]

    @property
    def bucket_ns(self) -> int:
        return RANGES[self.range][1]

    @property
    def since_ns(self) -> int:
        return self.now_ns - self.span_ns

    @property
    def labels(self) -> dict[str, str | None]:
        return {"service": self.service, "agent_version": self.agent_version}

    def url(self, path: str, **params: Any) -> str:
        """``path`` with the page's scope and ``params`` (None drops one) as its query."""
        merged: dict[str, Any] = {name: self.request.query_params.get(name) for name in SCOPE_PARAMS}
        merged.update(params)
        query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
        return f"{path}?{query}" if query else path


def _ago(ns: int | None, now_ns: int) -> str:
    if ns is None:
        return ""
    seconds = (now_ns - ns) / NS
    if seconds < 0:
        return "ahead"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _when(value: str | int | None) -> str:
    """A short UTC time from an RFC 3339 string of the API's (``...Z``) or nanoseconds."""
    if value is None or value == "":
        return ""
    ns = value if isinstance(value, int) else _ns(value)
    return datetime.fromtimestamp((ns or 0) / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ns(value: str | None) -> int | None:
    """Nanoseconds of an RFC 3339 UTC time as :func:`~agentwatch.api.views.rfc3339` writes it."""
    if not value:
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp())
    return seconds * NS + int((fraction or "0").ljust(9, "0")[:9])


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "-"
        text = f"{value:,.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def slo_state(entry: Mapping[str, Any], firing_rules: set[str]) -> str:
    """``firing`` (a burn-rate alert of it fires), ``breached`` (no budget left), ``burning`` (spending faster
    than the period allows on some window), ``ok``, or ``no-data``."""
    if f"slo:{entry['name']}" in firing_rules:
        return "firing"
    if entry.get("value") is None:
        return "no-data"
    if entry["error_budget_left"] <= 0:
        return "breached"
    rates = [r for r in (entry.get("burn_rates") or {}).values() if r is not None]
    if rates and max(rates) > 1.0:
        return "burning"
    return "ok"


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message in the parts model (tool calls and responses shown as such)."""
    out = []
    for part in message.get("parts") or []:
        kind = part.get("type")
        if kind == "text" or "content" in part:
            out.append(str(part.get("content", "")))
        elif kind == "tool_call":
            out.append(f"→ {part.get('name')}({_json(part.get('arguments'))})")
        elif kind == "tool_call_response":
            out.append(f"← {_json(part.get('response'))}")
        else:
            out.append(_json(part))
    return "\n".join(out)


def _json(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=1, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


class Dashboard:
    """The pages of one server, bound to its pipeline."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.store = pipeline.store
        self.engine = pipeline.store.engine
        self.auth = pipeline.auth
        self.env = Environment(loader=PackageLoader("agentwatch.ui", "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=_when, pct=_pct, num=_num, json=_json, message_text=message_text,
                                q=lambda v: quote(str(v), safe=""))
        self.env.globals.update(kinds=KINDS, ranges=list(RANGES), silence_durations=SILENCE_DURATIONS)

    # -- plumbing ------------------------------------------------------------

    def _token(self, request: Request) -> str | None:
        return token_from_headers(request.headers) or request.cookies.get(COOKIE) or None

    def project_of(self, request: Request) -> tuple[int, bool]:
        """The request's project and whether keys are in force (with none, ``?project=`` picks any)."""
        if not self.auth.keys_required:
            name = request.query_params.get("project")
            if name:
                with self.engine.connect() as conn:
                    found = [pid for pid, pname in queries.projects(conn) if pname == name]
                if not found:
                    raise NotFound(f"project {name!r} not found")
                return found[0], False
            return self.auth.project_for({}), False
        token = self._token(request)
        if token is None:
            raise Unauthorized("an API key is required")
        return self.auth.project_for({"authorization": f"Bearer {token}"}), True

    def scope(self, request: Request) -> Scope:
        project_id, keys_required = self.project_of(request)
        q = request.query_params
        chosen = q.get("range") or DEFAULT_RANGE
        if chosen not in RANGES:
            raise BadRequest(f"range: expected one of {', '.join(RANGES)}, got {chosen!r}")
        tick = self.pipeline.monitor.last_tick(project_id)
        with self.engine.connect() as conn:
            latest = queries.latest_event_ns(conn, project_id)
            names = [name for _, name in queries.projects(conn)] if not keys_required else []
        now_ns = max(tick or 0, latest or 0) or int(utcnow().timestamp()) * NS
        scope = Scope(request, project_id, self.store.project_name(project_id), names, keys_required, now_ns,
                      chosen, q.get("service") or None, q.get("agent_version") or None, tick is not None,
                      latest is not None)
        with self.engine.connect() as conn:
            scope.choices = queries.label_values(conn, project_id, scope.since_ns, now_ns + HOUR_NS)
        return scope

    def render(self, scope: Scope | None, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.env.get_template(template).render(scope=scope, nav=template.split(".")[0], **values)
        return HTMLResponse(page, status_code=status, headers={"cache-control": "no-store"})

    def page(self, handler: Callable[[Scope], Response]) -> Callable[[Request], Response]:
        """A sync page: scope, handler, and HTML for the errors a person can act on."""

        @functools.wraps(handler)
        def endpoint(request: Request) -> Response:
            try:
                return handler(self.scope(request))
            except Unauthorized:
                return RedirectResponse("/login?" + urlencode({"next": _local(str(request.url))}), 303)
            except AgentwatchError as exc:
                if exc.status >= 500:
                    raise
                return self.render(None, "error.html", exc.status, message=exc.message)

        return endpoint

    def action(self, handler: Callable[[Request, int, dict[str, str]], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        """A form post from the dashboard's own pages: origin checked, project resolved, fields parsed."""

        async def endpoint(request: Request) -> Response:
            origin = request.headers.get("origin")
            if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
                return self.render(None, "error.html", 403, message="a dashboard form must come from its own pages")
            try:
                project_id, _ = await asyncio.to_thread(self.project_of, request)
                fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
                return await handler(request, project_id, fields)
            except Unauthorized:
                return RedirectResponse("/login", 303)
            except AgentwatchError as exc:
                if exc.status >= 500:
                    raise
                return self.render(None, "error.html", exc.status, message=exc.message)

        return endpoint

    # -- overview ------------------------------------------------------------

    def overview(self, scope: Scope) -> Response:
        public_url = self.settings.public_url
        with self.engine.connect() as conn:
            firing, _ = alert_store.list_alerts(conn, scope.project_id, state="firing", limit=100)
            resolved, _ = alert_store.list_alerts(conn, scope.project_id, state="resolved",
                                                  since_ns=scope.since_ns, limit=10)
            sessions = queries.window_totals(conn, scope.project_id, SESSION_DIMENSION, since_ns=scope.since_ns,
                                             until_ns=scope.now_ns + MINUTE_NS, labels=scope.labels)
        firing_alerts = [alert_dict(r, public_url) for r in firing]
        firing_alerts = [a for a in firing_alerts if _labels_match(a["labels"], scope)]
        rules = {a["rule"] for a in firing_alerts if a["kind"] == "burn_rate"}
        slos = [dict(e, state=slo_state(e, rules)) for e in self.pipeline.monitor.slo_status(scope.project_id)
                if _labels_match(e["labels"], scope)]
        empty = not scope.has_sessions and not firing_alerts
        return self.render(scope, "overview.html", firing=firing_alerts,
                           resolved=[alert_dict(r, public_url) for r in resolved], slos=slos,
                           sessions=int(sessions.count), empty=empty,
                           endpoint=f"{scope.request.url.scheme}://{scope.request.url.netloc}")

    # -- dimensions ----------------------------------------------------------

    def dimensions(self, scope: Scope) -> Response:
        catalogue = self.pipeline.catalogue
        wanted = scope.request.query_params.get("evaluator") or None
        names = list(dict.fromkeys([s.name for s in catalogue.specs]
                                   + [r["name"] for r in evaluations.list_evaluators(self.engine)]))
        if wanted is not None and wanted not in names:
            raise NotFound(f"evaluator {wanted!r} not found")
        until = scope.now_ns + MINUTE_NS
        base_since = scope.since_ns - BASELINE_NS
        cards = []
        with self.engine.connect() as conn:
            # Versions first seen after the baseline began are new in the window: those get a marker.
            agent_marks = [charts.Marker(t, v, "agent") for v, t in queries.first_seen(
                conn, scope.project_id, SESSION_DIMENSION, "agent_version", since_ns=base_since, until_ns=until)
                if t > base_since]
            for name in names if wanted is None else [wanted]:
                spec = catalogue.by_name(name)
                stat = drift.statistic(spec)
                versions = queries.first_seen(conn, scope.project_id, name, "evaluator_version",
                                              since_ns=base_since, until_ns=until)
                points = queries.series(conn, scope.project_id, name, since_ns=scope.since_ns, until_ns=until,
                                        bucket_ns=scope.bucket_ns, labels=scope.labels)
                window = queries.window_totals(conn, scope.project_id, name, since_ns=scope.since_ns,
                                               until_ns=until, labels=scope.labels)
                baseline = queries.window_totals(conn, scope.project_id, name, since_ns=base_since,
                                                 until_ns=scope.since_ns, labels=scope.labels)
                version = spec.version if spec is not None else (versions[-1][0] if versions else None)
                hist_now = hist_base = None
                if version is not None:
                    hist_now = queries.score_histogram(conn, scope.project_id, name, version,
                                                       since_ns=scope.since_ns, until_ns=until)
                    hist_base = queries.score_histogram(conn, scope.project_id, name, version,
                                                        since_ns=base_since, until_ns=scope.since_ns)
                cards.append(self._card(scope, name, spec, stat, versions, agent_marks, points, window, baseline,
                                        version, hist_now, hist_base))
        return self.render(scope, "dimensions.html", cards=cards, names=names, wanted=wanted)

    def _card(self, scope: Scope, name: str, spec: Any, stat: str, versions: list[tuple[str, int]],
              agent_marks: list[charts.Marker], points: list[queries.Point], window: Any, baseline: Any,
              version: str | None, hist_now: list[int] | None, hist_base: list[int] | None) -> dict[str, Any]:
        base_mean = base_var = None
        if baseline.weighted_count > 0 and drift.scored(baseline) > 0:
            base_mean = drift.mean_of(baseline, stat)
            base_var = drift.variance_of(baseline, stat)
        line, band = [], []
        for point in points:
            n = drift.scored(point.totals)
            value = drift.mean_of(point.totals, stat) if point.totals.weighted_count > 0 and n > 0 else None
            line.append((point.start_ns, value, n))
            if base_mean is not None and base_var is not None and n >= BAND_MIN_N:
                half = BAND_Z * (base_var / n) ** 0.5
                band.append((point.start_ns, base_mean - half, base_mean + half))
        first_hour = scope.since_ns - BASELINE_NS
        markers = [charts.Marker(t, v[:8], "evaluator") for v, t in versions if t > first_hour] + agent_marks
        label = "pass rate" if stat == "pass_rate" else "mean score"
        n_window = drift.scored(window)
        return {
            "name": name, "kind": spec.kind if spec else "external", "owner": getattr(spec, "owner", None),
            "threshold": getattr(spec, "threshold", None), "stat": label, "version": version,
            "chart": charts.line_chart(line, band, markers, since_ns=scope.since_ns - scope.since_ns % scope.bucket_ns,
                                       until_ns=scope.now_ns, y_label=label, bucket_ns=scope.bucket_ns),
            "histogram": charts.histogram(hist_now, hist_base) if hist_now and hist_base and (
                sum(hist_now) + sum(hist_base)) > 0 else None,
            "hist_now": sum(hist_now) if hist_now else 0, "hist_base": sum(hist_base) if hist_base else 0,
            "value": drift.mean_of(window, stat) if window.weighted_count > 0 and n_window > 0 else None,
            "baseline": base_mean, "failure_rate": window.failure_ratio, "count": int(window.count),
            "weighted": window.weighted_count, "errors": int(window.errors), "baseline_count": int(baseline.count),
            "versions": [(v, t) for v, t in versions],
        }

    # -- alerts --------------------------------------------------------------

    def alerts(self, scope: Scope) -> Response:
        q = scope.request.query_params
        state = q.get("state") or None
        kind = q.get("kind") or None
        with self.engine.connect() as conn:
            rows, cursor = alert_store.list_alerts(conn, scope.project_id, state=state, kind=kind,
                                                   since_ns=None if state == "firing" else scope.since_ns,
                                                   limit=PAGE_SIZE, cursor=q.get("cursor") or None)
            silences, _ = alert_store.list_silences(conn, scope.project_id, True, now=utcnow(), limit=50)
        now = utcnow()
        items = [alert_dict(r, self.settings.public_url) for r in rows]
        return self.render(scope, "alerts.html", alerts=items, state=state, kind=kind, cursor=cursor,
                           silences=[silence_dict(s, now) for s in silences])

    def alert(self, scope: Scope) -> Response:
        raw = scope.request.path_params["alert_id"]
        if not raw.isdigit():
            raise NotFound(f"alert {raw!r} not found")
        with self.engine.connect() as conn:
            row = alert_store.get_alert(conn, scope.project_id, int(raw))
        alert = alert_dict(row, self.settings.public_url)
        return self.render(scope, "alert.html", alert=alert, notice=scope.request.query_params.get("notice"))

    async def ack(self, request: Request, project_id: int, fields: dict[str, str]) -> Response:
        alert_id = _alert_id(request)
        by = fields.get("by", "").strip() or None

        def run() -> None:
            with self.engine.begin() as conn:
                alert_store.acknowledge(conn, project_id, alert_id, by, utcnow())

        await asyncio.to_thread(run)
        return RedirectResponse(f"/alerts/{alert_id}?notice=acknowledged", 303)

    async def silence(self, request: Request, project_id: int, fields: dict[str, str]) -> Response:
        alert_id = _alert_id(request)
        duration = fields.get("duration", "")
        if duration not in SILENCE_DURATIONS:
            raise BadRequest(f"duration: expected one of {', '.join(SILENCE_DURATIONS)}, got {duration!r}")

        def run() -> dict[str, Any]:
            now = utcnow()
            with self.engine.begin() as conn:
                row = alert_store.get_alert(conn, project_id, alert_id)
                matchers: dict[str, Any] = {"kind": row["kind"], "rule": row["rule"]}
                labels = {k: v for k, v in (row["labels"] or {}).items() if v}
                if labels:
                    matchers["labels"] = labels
                return alert_store.create_silence(conn, project_id, matchers, fields.get("author"),
                                                  fields.get("comment"), now + timedelta(seconds=parse_duration(
                                                      duration)), now)

        await asyncio.to_thread(run)
        return RedirectResponse(f"/alerts/{alert_id}?notice=silenced+for+{duration}", 303)

    # -- sessions and traces -------------------------------------------------

    def sessions(self, scope: Scope) -> Response:
        q = scope.request.query_params
        flagged = {"true": True, "false": False}.get(q.get("flagged") or "")
        flt = SessionFilter(service=scope.service, agent_version=scope.agent_version,
                            intent=q.get("intent") or None, since_ns=scope.since_ns, until_ns=scope.now_ns + 1,
                            flagged=flagged, failing=q.get("failing") or None)
        rows, cursor = self.store.list_sessions(scope.project_id, flt, limit=PAGE_SIZE, cursor=q.get("cursor") or None)
        items = [session_json(r, scope.project) for r in rows]
        names = list(dict.fromkeys(s.name for s in self.pipeline.catalogue.specs))
        return self.render(scope, "sessions.html", sessions=items, cursor=cursor, evaluators=names,
                           filters={"intent": q.get("intent") or "", "flagged": q.get("flagged") or "",
                                    "failing": q.get("failing") or ""},
                           empty_store=not scope.has_sessions)

    def session(self, scope: Scope) -> Response:
        session_id = scope.request.path_params["session_id"]
        row = self.store.get_session(scope.project_id, session_id)
        spans = self.store.spans_of_session(scope.project_id, session_id)
        scores = [score_json(r) for r in evaluations.session_scores(self.engine, scope.project_id, session_id)]
        tree = span_tree(spans, self.pipeline.options)
        times = {(s["trace_id"], s["span_id"]): (s["start_ns"], s["end_ns"]) for s in spans}
        start = min([row["start_ns"], *(t[0] for t in times.values())])
        end = max([row["end_ns"], *(t[1] for t in times.values())])
        turns = []
        for root in tree:
            flat: list[dict[str, Any]] = []
            stack = [(root, 0)]
            while stack:
                node, depth = stack.pop()
                s_ns, e_ns = times[(node["trace_id"], node["span_id"])]
                total = max(end - start, 1)
                flat.append({"span": node, "depth": depth, "left": 100.0 * (s_ns - start) / total,
                             "width": max(100.0 * (e_ns - s_ns) / total, 0.3),
                             "offset_ms": (s_ns - start) / 1e6})
                stack.extend((child, depth + 1) for child in reversed(node["children"]))
            asked = next((r["span"]["input_text"] for r in flat if r["span"]["input_text"]), None)
            answered = next((r["span"]["output_text"] for r in reversed(flat) if r["span"]["output_text"]), None)
            turns.append({"root": root, "spans": flat, "asked": asked, "answered": answered})
        failing = [s for s in scores if s["passed"] is False and not s["shadow"]]
        return self.render(scope, "session.html", session=session_json(row, scope.project), turns=turns,
                           scores=scores, failing=failing, dropped=row.get("payload_dropped_at") is not None,
                           trace=scope.request.query_params.get("trace"))

    def trace(self, scope: Scope) -> Response:
        trace_id = scope.request.path_params["trace_id"].lower()
        rows = self.store.spans_of_trace(scope.project_id, trace_id)
        if not rows:
            raise NotFound(f"trace {trace_id!r} not found")
        session_id = rows[0]["session_id"]
        return RedirectResponse(scope.url(f"/sessions/{quote(session_id, safe='')}", trace=trace_id)
                                + f"#trace-{trace_id}", 303)

    # -- clusters and evaluators ---------------------------------------------

    def clusters(self, scope: Scope) -> Response:
        raw_cursor = scope.request.query_params.get("cursor")
        if raw_cursor and not raw_cursor.isdigit():
            raise BadRequest(f"cursor: not a cursor this page gave: {raw_cursor!r}")
        tick = self.pipeline.monitor.last_tick(scope.project_id)
        bucket = scope.span_ns // 24
        with self.engine.connect() as conn:
            items, cursor = cluster_store.list_templates(conn, scope.project_id, limit=25,
                                                         cursor=int(raw_cursor) if raw_cursor else None, now_ns=tick)
            counts = queries.template_counts(conn, scope.project_id, [i["id"] for i in items],
                                             since_ns=scope.since_ns, until_ns=scope.now_ns + 1, bucket_ns=bucket)
            for item in items:
                item["examples"] = queries.template_examples(conn, scope.project_id, item["id"], 3)
                item["in_range"] = sum(counts.get(item["id"], []))
                item["new"] = not item["baseline"] and item["first_seen_ns"] >= scope.since_ns
                item["bars"] = charts.bars(counts.get(item["id"], []), since_ns=scope.since_ns, bucket_ns=bucket)
        return self.render(scope, "clusters.html", templates=items, cursor=cursor)

    def evaluators(self, scope: Scope) -> Response:
        from agentwatch.api.app import evaluator_items

        items = evaluator_items(self.pipeline)
        by_name: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for item in items:
                found = calibration.latest_run(conn, scope.project_id, item["name"], item["version"])
                item["calibration_run"] = run_json(found) if found else None
                by_name.setdefault(item["name"], []).append(item)
        return self.render(scope, "evaluators.html", evaluators=by_name)

    # -- review queue --------------------------------------------------------

    def review(self, scope: Scope) -> Response:
        q = scope.request.query_params
        evaluator = q.get("evaluator") or None
        reason = q.get("reason") or None
        state = q.get("state") or "unreviewed"
        if reason is not None and reason not in review.REASONS:
            raise BadRequest(f"reason: expected one of {', '.join(review.REASONS)}, got {reason!r}")
        if state not in review.STATES:
            raise BadRequest(f"state: expected one of {', '.join(review.STATES)}, got {state!r}")
        alert = q.get("alert") or None
        if alert is not None and not alert.isdigit():
            raise BadRequest(f"alert: expected an alert id, got {alert!r}")
        names = list(dict.fromkeys(s.name for s in self.pipeline.catalogue.specs))
        flt = review.ReviewFilter(evaluator=evaluator, alert_id=int(alert) if alert else None, reason=reason,
                                  state=state)
        with self.engine.connect() as conn:
            found, cursor = review.queue(conn, scope.project_id, flt, limit=REVIEW_PAGE, cursor=q.get("cursor") or None)
            runs = {name: calibration.list_runs(conn, scope.project_id, evaluator=name, limit=1)
                    for name in ([evaluator] if evaluator else names)}
            known = [d["name"] for d in datasets.list_datasets(conn, scope.project_id)]
        items = review_items(self.pipeline, scope.project_id, found)
        for item in items:
            scored = [s["evaluator"] for s in item["scores"]]
            item["dimension"] = (evaluator if evaluator in scored else None) or next(
                iter(item["failing"] or item["sampled_for"] or scored or names), "")
            item["dimensions"] = list(dict.fromkeys(scored + ([evaluator] if evaluator else [])))
        calibrations = {name: run_json(rows[0]) for name, rows in runs.items() if rows}
        return self.render(scope, "review.html", items=items, cursor=cursor, evaluators=names, evaluator=evaluator,
                           reason=reason, state=state, reasons=review.REASONS, states=review.STATES,
                           verdicts=REVIEW_KEYS, calibrations=calibrations, datasets=known,
                           notice=q.get("notice"), back=_local(str(scope.request.url)))

    async def label(self, request: Request, project_id: int, fields: dict[str, str]) -> Response:
        checked = labels.validate({"session_id": fields.get("session_id", ""), "evaluator": fields.get("evaluator", ""),
                                   "verdict": fields.get("verdict"), "note": fields.get("note") or None,
                                   "author": fields.get("author") or None})
        stored = await asyncio.to_thread(create_label, self.pipeline, project_id, checked)
        notice = f"labelled {stored['session_id']} for {stored['evaluator']}: {stored['verdict']}"
        run = stored.get("calibration")
        if run:
            metrics = run.get("metrics") or {}
            notice += (f"; {stored['evaluator']} agrees with labels {_pct(metrics.get('accuracy'))}"
                       f" (kappa {_num(metrics.get('kappa'), 2)}, n={run.get('n')})")
        dataset = fields.get("dataset", "").strip()
        if fields.get("add") == "on" and dataset:
            project = self.store.project_name(project_id)
            added = await asyncio.to_thread(
                datasets.add_from_request, self.engine, self.pipeline.scorer.load, self.pipeline.catalogue,
                self.pipeline.options, project_id, project, dataset,
                {"sessions": [{"session_id": stored["session_id"], "evaluators": [stored["evaluator"]]}],
                 "author": checked.get("author")})
            notice += f"; added to {added.get('dataset', dataset)} version {added.get('version')}"
        back = _local(fields.get("back") or "/review")
        parts = urlsplit(back)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("notice", "cursor")]
        query.append(("notice", notice))
        return RedirectResponse(f"{parts.path}?{urlencode(query)}", 303)

    # -- signing in ----------------------------------------------------------

    def login_form(self, request: Request) -> Response:
        return self.render(None, "login.html", next=_local(request.query_params.get("next") or "/"),
                           keys_required=self.auth.keys_required, error=None)

    async def login_post(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return self.render(None, "error.html", 403, message="a dashboard form must come from its own pages")
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        key = fields.get("key", "").strip()
        target = _local(fields.get("next") or "/")
        try:
            await asyncio.to_thread(self.auth.project_for, {"authorization": f"Bearer {key}"})
        except Unauthorized as exc:
            return self.render(None, "login.html", 401, next=target, keys_required=True,
                               error=exc.message if key else "enter an API key")
        response = RedirectResponse(target, 303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=30 * 24 * 3600)
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _labels_match(labels: Mapping[str, Any], scope: Scope) -> bool:
    """An entry keyed by a label the filter names must have the filtered value; unkeyed entries stay."""
    for name, wanted in scope.labels.items():
        if wanted and labels.get(name) and labels[name] != wanted:
            return False
    return True


def _alert_id(request: Request) -> int:
    raw = request.path_params["alert_id"]
    if not raw.isdigit():
        raise NotFound(f"alert {raw!r} not found")
    return int(raw)


def _local(url: str) -> str:
    """Only a path on this server (no open redirect): the path and query of ``url``."""
    parts = urlsplit(url)
    path = parts.path if parts.path.startswith("/") and not parts.path.startswith("//") else "/"
    return path + (f"?{parts.query}" if parts.query else "")


__all__ = ["COOKIE", "Dashboard", "RANGES", "Scope", "message_text", "slo_state"]
