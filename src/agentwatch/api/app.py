"""The ASGI application: OTLP/HTTP, the REST API and health endpoints.

``create_app(settings, pipeline)`` builds it; the OTLP/gRPC server, when a
port is given, starts and stops with it. Errors under ``/api`` are
``{"error": {"code", "message"}}`` with the status of the exception class
(:mod:`agentwatch.errors`), mapped here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentwatch import __version__
from agentwatch.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agentwatch.api.metrics import render as render_metrics
from agentwatch.api.openapi import openapi_spec
from agentwatch.api.views import rfc3339, score_json, session_json, span_json, span_tree
from agentwatch.errors import AgentwatchError, BadRequest, NotFound
from agentwatch.ingest.grpc import make_grpc_server
from agentwatch.ingest.http import make_otlp_endpoint
from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings
from agentwatch.store import evaluations, labels
from agentwatch.store.erase import erase_user
from agentwatch.store.store import SessionFilter

logger = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def parse_time(name: str, value: str | None) -> int | None:
    """Unix nanoseconds from an RFC 3339 time (``Z`` or an offset; naive means UTC)."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {value!r} is not an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


def _bool(name: str, value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: expected true or false, got {value!r}")


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit: expected an integer from 1 to 1000, got {value!r}") from None
    if not 1 <= limit <= 1000:
        raise BadRequest(f"limit: expected an integer from 1 to 1000, got {limit}")
    return limit


def _score_cursor(value: str) -> tuple[int, int]:
    time_ns, _, score_id = value.partition(".")
    try:
        return int(time_ns), int(score_id)
    except ValueError:
        raise BadRequest("cursor is not one this server issued") from None


_SESSION_FILTERS = {"service", "agent_version", "intent", "user_id", "since", "until", "flagged", "complete",
                    "limit", "cursor"}


def create_app(settings: Settings, pipeline: Pipeline, *, grpc_host: str = "127.0.0.1",
               grpc_port: int | None = None) -> Starlette:
    store = pipeline.store
    auth = pipeline.auth

    def sessions(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        unknown = set(q) - _SESSION_FILTERS
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        flt = SessionFilter(
            service=q.get("service"),
            agent_version=q.get("agent_version"),
            intent=q.get("intent"),
            user_id=q.get("user_id"),
            since_ns=parse_time("since", q.get("since")),
            until_ns=parse_time("until", q.get("until")),
            flagged=_bool("flagged", q.get("flagged")),
            complete=_bool("complete", q.get("complete")),
        )
        rows, cursor = store.list_sessions(project_id, flt, limit=_limit(q.get("limit")), cursor=q.get("cursor"))
        project = store.project_name(project_id)
        return JSONResponse({"items": [session_json(r, project) for r in rows], "next_cursor": cursor})

    async def erase(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        q = request.query_params
        unknown = set(q) - {"user_id"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        user_id = q.get("user_id", "")
        if not user_id.strip():
            raise BadRequest("user_id: required, the user whose data to erase")
        writer = pipeline.writer

        def run() -> dict[str, int]:
            # On the writer thread: no batch of that user's spans is half-written meanwhile, and the
            # writer forgets which session each trace was filed under.
            removed = erase_user(store.engine, project_id, user_id)
            writer._forget()  # noqa: SLF001 - caches only
            return removed

        removed = await asyncio.wrap_future(writer.call(run))
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
        catalogue = pipeline.catalogue
        current = {(s.name, s.version): s for s in catalogue.specs}
        items = []
        for row in evaluations.list_evaluators(store.engine):
            spec = current.get((row["name"], row["version"]))
            described = spec.describe(catalogue.default_rate) if spec else {
                "name": row["name"], "kind": row["kind"], "version": row["version"]}
            described.update(current=spec is not None, created_at=rfc3339(row["created_at"]),
                             first_used_at=rfc3339(row["first_used_at"]) if row["first_used_at"] else None)
            items.append(described)
        for spec in catalogue.specs:
            if spec.kind == "external" and not any(i["name"] == spec.name for i in items):
                items.append({**spec.describe(catalogue.default_rate), "current": True, "created_at": None,
                              "first_used_at": None})
        return JSONResponse({"items": items, "next_cursor": None})

    def scores_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        unknown = set(q) - {"session_id", "evaluator", "evaluator_version", "since", "until", "limit", "cursor"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = _limit(q.get("limit"))
        cursor_param = q.get("cursor")
        after = _score_cursor(cursor_param) if cursor_param else None
        rows = evaluations.list_scores(
            store.engine, project_id, session_id=q.get("session_id"), evaluator=q.get("evaluator"),
            evaluator_version=q.get("evaluator_version"), since_ns=parse_time("since", q.get("since")),
            until_ns=parse_time("until", q.get("until")), limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = f"{rows[-1]['event_time_ns']}.{rows[-1]['id']}" if more and rows else None
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

    async def label(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body must be JSON") from None
        stored = await asyncio.to_thread(labels.add_label, store.engine, project_id, labels.validate(body))
        stored["event_time"] = rfc3339(stored.pop("event_time_ns"))
        stored["created_at"] = rfc3339(stored["created_at"])
        stored.pop("project_id")
        return JSONResponse(stored, status_code=201)

    def metrics(request: Request) -> Response:
        auth.project_for(request.headers)
        return Response(render_metrics(pipeline), media_type=METRICS_CONTENT_TYPE)

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_spec(__version__))

    routes = [
        Route("/v1/traces", make_otlp_endpoint(pipeline.receiver, auth.project_for, settings.max_body_bytes,
                                               "traces"), methods=["POST"]),
        Route("/v1/logs", make_otlp_endpoint(pipeline.receiver, auth.project_for, settings.max_body_bytes,
                                             "logs"), methods=["POST"]),
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
        Route("/api/v1/labels", label, methods=["POST"]),
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
        if grpc_port is not None:
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
