"""The ASGI application: OTLP/HTTP, the REST API, health endpoints and the dashboard.

``create_app(settings, pipeline)`` builds it; the OTLP/gRPC server, when a
port is given, starts and stops with it. Errors under ``/api`` are
``{"error": {"code", "message"}}`` with the status of the exception class
(:mod:`agentwatch.errors`), mapped here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentwatch import __version__
from agentwatch.alert import store as alert_store
from agentwatch.alert.types import alert_dict, silence_dict
from agentwatch.api.feedback import feedback_routes
from agentwatch.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agentwatch.api.metrics import render as render_metrics
from agentwatch.api.openapi import openapi_spec
from agentwatch.api.params import only_params as _only_params
from agentwatch.api.params import parse_time
from agentwatch.api.params import query_bool as _bool
from agentwatch.api.params import query_limit as _limit
from agentwatch.api.views import score_json, session_json, span_json, span_tree
from agentwatch.errors import AgentwatchError, BadRequest, NotFound
from agentwatch.ingest.grpc import make_grpc_server
from agentwatch.ingest.http import make_otlp_endpoint
from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings, parse_duration
from agentwatch.store import evaluations
from agentwatch.store.erase import erase_user
from agentwatch.store.models import utcnow
from agentwatch.store.store import SessionFilter, decode_time_cursor, encode_time_cursor
from agentwatch.timefmt import rfc3339
from agentwatch.ui import ui_routes

logger = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


_SESSION_FILTERS = {"service", "agent_version", "intent", "user_id", "since", "until", "flagged", "complete",
                    "failing", "limit", "cursor"}


def create_app(settings: Settings, pipeline: Pipeline, *, grpc_host: str = "127.0.0.1",
               grpc_port: int | None = None) -> Starlette:
    store = pipeline.store
    auth = pipeline.auth

    def sessions(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only_params(q, _SESSION_FILTERS)
        flt = SessionFilter(
            service=q.get("service"),
            agent_version=q.get("agent_version"),
            intent=q.get("intent"),
            user_id=q.get("user_id"),
            since_ns=parse_time("since", q.get("since")),
            until_ns=parse_time("until", q.get("until")),
            flagged=_bool("flagged", q.get("flagged")),
            complete=_bool("complete", q.get("complete")),
            failing=q.get("failing") or None,
        )
        rows, cursor = store.list_sessions(project_id, flt, limit=_limit(q.get("limit")), cursor=q.get("cursor"))
        project = store.project_name(project_id)
        return JSONResponse({"items": [session_json(r, project) for r in rows], "next_cursor": cursor})

    async def erase(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        q = request.query_params
        _only_params(q, {"user_id"})
        user_id = q.get("user_id", "")
        if not user_id.strip():
            raise BadRequest("user_id: required, the user whose data to erase")
        writer = pipeline.writer

        def run() -> dict[str, int]:
            # On the writer thread: no batch of that user's spans is half-written meanwhile, and the
            # writer forgets which session each trace was filed under.
            removed = erase_user(store.engine, project_id, user_id)
            pipeline.sessions.forget()
            return removed

        if pipeline.ingests:
            removed = await asyncio.wrap_future(writer.call(run))
        else:  # no writer here: the ingest processes' caches hold only settled filings
            removed = await asyncio.to_thread(erase_user, store.engine, project_id, user_id)
        return JSONResponse({"removed": removed})

    def session(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        session_id = request.path_params["session_id"]
        row = store.get_session(project_id, session_id)
        spans = store.spans_of_session(project_id, session_id)
        scores = evaluations.session_scores(store.engine, project_id, session_id)
        return JSONResponse({
            "session": session_json(row, store.project_name(project_id)),
            "spans": span_tree(spans, pipeline.options),
            "scores": [score_json(r) for r in scores],
        })

    def evaluators_list(request: Request) -> JSONResponse:
        auth.project_for(request.headers)
        return JSONResponse({"items": evaluator_items(pipeline), "next_cursor": None})

    def scores_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only_params(q, {"session_id", "evaluator", "evaluator_version", "since", "until", "limit", "cursor"})
        limit = _limit(q.get("limit"))
        cursor_param = q.get("cursor")
        after = decode_time_cursor(cursor_param) if cursor_param else None
        rows = evaluations.list_scores(
            store.engine, project_id, session_id=q.get("session_id"), evaluator=q.get("evaluator"),
            evaluator_version=q.get("evaluator_version"), since_ns=parse_time("since", q.get("since")),
            until_ns=parse_time("until", q.get("until")), limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = encode_time_cursor(rows[-1]["event_time_ns"], rows[-1]["id"]) if more and rows else None
        return JSONResponse({"items": [score_json(r) for r in rows], "next_cursor": cursor})

    async def evaluate_now(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body must be JSON: {\"session_id\": \"...\", \"evaluators\": [names]?}") from None
        if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
            raise BadRequest("session_id: required, a string")
        only = body.get("evaluators")
        if only is not None and (not isinstance(only, list) or not all(isinstance(n, str) for n in only)):
            raise BadRequest("evaluators: expected a list of evaluator names")
        unknown = [n for n in only or [] if pipeline.catalogue.by_name(n) is None]
        if unknown:
            raise BadRequest(f"unknown evaluator(s): {', '.join(unknown)}")
        rows = await pipeline.scorer.evaluate_session(project_id, body["session_id"], only=only, reason="inline")
        return JSONResponse({"session_id": body["session_id"],
                             "scores": [score_json({**r, "created_at": None}) for r in rows]})

    def trace(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        trace_id = request.path_params["trace_id"].lower()
        rows = store.spans_of_trace(project_id, trace_id)
        if not rows:
            raise NotFound(f"trace {trace_id!r} not found")
        return JSONResponse({"spans": [span_json(r, pipeline.options) for r in rows]})

    def flush(request: Request) -> JSONResponse:
        result = pipeline.flush(auth.project_for(request.headers))
        return JSONResponse({"flushed": True, **result})

    def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    def readyz(request: Request) -> JSONResponse:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return JSONResponse({"status": "unavailable", "reason": f"database: {exc.__class__.__name__}"}, 503)
        if not pipeline.ready:
            return JSONResponse({"status": "unavailable", "reason": "writer not running"}, 503)
        return JSONResponse({"status": "ready"})

    def metrics(request: Request) -> Response:
        auth.project_for(request.headers)
        return Response(render_metrics(pipeline), media_type=METRICS_CONTENT_TYPE)

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_spec(__version__))

    async def not_ingesting(request: Request) -> JSONResponse:
        return _error(404, "not_found", f"this process does not ingest (role {pipeline.role}): send OTLP to a "
                                        "process started with --role ingest or all")

    if pipeline.ingests:
        otlp = [Route("/v1/traces", make_otlp_endpoint(pipeline.receiver, auth.project_for, settings.max_body_bytes,
                                                       "traces"), methods=["POST"]),
                Route("/v1/logs", make_otlp_endpoint(pipeline.receiver, auth.project_for, settings.max_body_bytes,
                                                     "logs"), methods=["POST"])]
    else:
        otlp = [Route("/v1/traces", not_ingesting, methods=["POST"]),
                Route("/v1/logs", not_ingesting, methods=["POST"])]
    routes = [
        *otlp,
        Route("/api/v1/sessions", sessions, methods=["GET"]),
        Route("/api/v1/sessions", erase, methods=["DELETE"]),
        Route("/api/v1/sessions/{session_id:path}", session, methods=["GET"]),
        Route("/api/v1/traces/{trace_id}", trace, methods=["GET"]),
        Route("/api/v1/admin/flush", flush, methods=["POST"]),
        Route("/api/v1/evaluators", evaluators_list, methods=["GET"]),
        Route("/api/v1/scores", scores_list, methods=["GET"]),
        Route("/api/v1/evaluate", evaluate_now, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *feedback_routes(pipeline),
        *alert_routes(settings, pipeline),
        *monitor_routes(pipeline),
        *ui_routes(settings, pipeline),
    ]

    async def agentwatch_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AgentwatchError)
        if exc.status >= 500:
            logger.error("request %s %s failed: %s", request.method, request.url.path, exc)
        return _error(exc.status, exc.code, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if exc.status_code != 404 else f"no such endpoint: {request.method} {request.url.path}"
        return _error(exc.status_code, code, str(message))

    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.exception("request %s %s failed", request.method, request.url.path)
        return _error(500, "internal_error", "internal error; the server log has the details")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pipeline.start()
        grpc_server = None
        if grpc_port is not None and pipeline.ingests:
            grpc_server, bound = make_grpc_server(pipeline.receiver, auth.project_for, host=grpc_host,
                                                  port=grpc_port, max_message_bytes=settings.max_body_bytes)
            await grpc_server.start()
            app.state.grpc_port = bound
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            pipeline.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={AgentwatchError: agentwatch_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.pipeline = pipeline
    return app


def evaluator_items(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every evaluator version of the catalogue, as ``GET /api/v1/evaluators`` lists them."""
    catalogue = pipeline.catalogue
    current = {(s.name, s.version): s for s in catalogue.specs}
    items = []
    for row in evaluations.list_evaluators(pipeline.store.engine):
        spec = current.get((row["name"], row["version"]))
        described = spec.describe(catalogue.default_rate) if spec else {
            "name": row["name"], "kind": row["kind"], "version": row["version"]}
        described.update(current=spec is not None, created_at=rfc3339(row["created_at"]),
                         calibration=row.get("calibration"),
                         first_used_at=rfc3339(row["first_used_at"]) if row["first_used_at"] else None)
        items.append(described)
    for spec in catalogue.specs:
        if spec.kind == "external" and not any(i["name"] == spec.name for i in items):
            items.append({**spec.describe(catalogue.default_rate), "current": True, "created_at": None,
                          "first_used_at": None})
    return items


def alert_routes(settings: Settings, pipeline: Pipeline) -> list[Route]:
    """``/api/v1/alerts`` (list, one, ack) and ``/api/v1/silences`` (list, create), scoped to the key's project."""
    engine = pipeline.store.engine
    auth = pipeline.auth
    public_url = settings.public_url

    def alert_id_of(request: Request) -> int:
        raw = request.path_params["alert_id"]
        try:
            return int(raw)
        except ValueError:
            raise NotFound(f"alert {raw!r} not found") from None

    async def json_body(request: Request, *, optional: bool = False) -> dict[str, object]:
        raw = await request.body()
        if optional and not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def alerts_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only_params(q, {"state", "kind", "since", "limit", "cursor"})
        limit = _limit(q.get("limit"))
        since_ns = parse_time("since", q.get("since"))
        with engine.connect() as conn:
            rows, cursor = alert_store.list_alerts(conn, project_id, state=q.get("state") or None,
                                                   kind=q.get("kind") or None, since_ns=since_ns, limit=limit,
                                                   cursor=q.get("cursor") or None)
        return JSONResponse({"items": [alert_dict(r, public_url) for r in rows], "next_cursor": cursor})

    def alert_one(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        with engine.connect() as conn:
            row = alert_store.get_alert(conn, project_id, alert_id_of(request))
        return JSONResponse(alert_dict(row, public_url))

    async def alert_ack(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        alert_id = alert_id_of(request)
        body = await json_body(request, optional=True)
        unknown = set(body) - {"by"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: by)")
        by = body.get("by")
        if by is not None and (not isinstance(by, str) or not by.strip()):
            raise BadRequest("by: expected the name of who acknowledges")

        def run() -> dict[str, object]:
            with engine.begin() as conn:
                return alert_store.acknowledge(conn, project_id, alert_id, by.strip() if by else None, utcnow())

        row = await asyncio.to_thread(run)
        return JSONResponse(alert_dict(row, public_url))

    def silences_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only_params(q, {"all", "limit", "cursor"})
        everything = _bool("all", q.get("all")) or False
        limit = _limit(q.get("limit"))
        now = utcnow()
        with engine.connect() as conn:
            rows, cursor = alert_store.list_silences(conn, project_id, not everything, now=now, limit=limit,
                                                     cursor=q.get("cursor") or None)
        return JSONResponse({"items": [silence_dict(r, now) for r in rows], "next_cursor": cursor})

    async def silence_create(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        body = await json_body(request)
        known = {"matchers", "author", "comment", "expires_at", "duration"}
        unknown = set(body) - known
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        now = utcnow()
        expires, duration = body.get("expires_at"), body.get("duration")
        if expires is not None and duration is not None:
            raise BadRequest("expires_at: give expires_at or duration, not both")
        if duration is not None:
            try:
                seconds = parse_duration(duration)
            except ValueError as exc:
                raise BadRequest(f"duration: {exc}") from None
            if not 0 < seconds <= alert_store.MAX_SILENCE.total_seconds():
                raise BadRequest(f"duration: expected more than 0 and at most 24h, got {duration!r}")
            expires_at = now + timedelta(seconds=seconds)
        elif expires is not None:
            if not isinstance(expires, str):
                raise BadRequest("expires_at: expected an RFC 3339 time such as 2026-01-31T12:00:00Z")
            expires_ns = parse_time("expires_at", expires)
            assert expires_ns is not None
            expires_at = datetime.fromtimestamp(expires_ns / 1e9, tz=timezone.utc)
        else:
            raise BadRequest("expires_at: required (an RFC 3339 time at most 24h ahead), or give duration: 2h")

        def run() -> dict[str, object]:
            with engine.begin() as conn:
                return alert_store.create_silence(conn, project_id, body.get("matchers"), body.get("author"),
                                                  body.get("comment"), expires_at, now)

        row = await asyncio.to_thread(run)
        return JSONResponse({**silence_dict(row, now), "matched_alerts": row["matched_alerts"]},
                            status_code=201)

    return [
        Route("/api/v1/alerts", alerts_list, methods=["GET"]),
        Route("/api/v1/alerts/{alert_id}", alert_one, methods=["GET"]),
        Route("/api/v1/alerts/{alert_id}/ack", alert_ack, methods=["POST"]),
        Route("/api/v1/silences", silences_list, methods=["GET"]),
        Route("/api/v1/silences", silence_create, methods=["POST"]),
    ]


def monitor_routes(pipeline: Pipeline) -> list[Route]:
    """``/api/v1/slos`` and ``/api/v1/clusters``, scoped to the key's project."""
    from agentwatch.monitor import clusters

    engine = pipeline.store.engine
    auth = pipeline.auth

    def slos(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        _only_params(request.query_params, {"limit", "cursor"})
        items = pipeline.monitor.slo_status(project_id)
        tick = pipeline.monitor.last_tick(project_id)
        return JSONResponse({"items": items, "next_cursor": None, "as_of": rfc3339(tick)})

    def clusters_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        _only_params(request.query_params, {"limit", "cursor"})
        limit = _limit(request.query_params.get("limit"))
        raw_cursor = request.query_params.get("cursor")
        try:
            cursor = int(raw_cursor) if raw_cursor else None
        except ValueError:
            raise BadRequest(f"cursor: not a cursor this endpoint gave: {raw_cursor!r}") from None
        tick = pipeline.monitor.last_tick(project_id)
        with engine.connect() as conn:
            items, next_cursor = clusters.list_templates(conn, project_id, limit=limit, cursor=cursor, now_ns=tick)
        for item in items:
            item["first_seen"] = rfc3339(item.pop("first_seen_ns"))
            item["last_seen"] = rfc3339(item.pop("last_seen_ns"))
        return JSONResponse({"items": items, "next_cursor": str(next_cursor) if next_cursor else None})

    return [
        Route("/api/v1/slos", slos, methods=["GET"]),
        Route("/api/v1/clusters", clusters_list, methods=["GET"]),
    ]
