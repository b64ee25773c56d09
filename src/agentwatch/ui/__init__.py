"""The web dashboard, served at ``/`` on the API's port.

Server-rendered pages (Jinja2 templates and SVG drawn on the server, a few
lines of plain script, every asset in this package) that read through the
API's own store and monitor functions. :func:`ui_routes` is what the
application mounts.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings
from agentwatch.ui.pages import COOKIE, Dashboard


def ui_routes(settings: Settings, pipeline: Pipeline) -> list[BaseRoute]:
    """The dashboard's pages, form posts and static files."""
    ui = Dashboard(settings, pipeline)
    return [
        Route("/", ui.page(ui.overview), methods=["GET"], name="overview"),
        Route("/dimensions", ui.page(ui.dimensions), methods=["GET"]),
        Route("/alerts", ui.page(ui.alerts), methods=["GET"]),
        Route("/alerts/{alert_id}", ui.page(ui.alert), methods=["GET"]),
        Route("/alerts/{alert_id}/ack", ui.action(ui.ack), methods=["POST"]),
        Route("/alerts/{alert_id}/silence", ui.action(ui.silence), methods=["POST"]),
        Route("/sessions", ui.page(ui.sessions), methods=["GET"]),
        Route("/sessions/{session_id:path}", ui.page(ui.session), methods=["GET"]),
        Route("/traces/{trace_id}", ui.page(ui.trace), methods=["GET"]),
        Route("/clusters", ui.page(ui.clusters), methods=["GET"]),
        Route("/evaluators", ui.page(ui.evaluators), methods=["GET"]),
        Route("/review", ui.page(ui.review), methods=["GET"]),
        Route("/review/label", ui.action(ui.label), methods=["POST"]),
        Route("/login", ui.login_form, methods=["GET"]),
        Route("/login", ui.login_post, methods=["POST"]),
        Route("/logout", ui.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("agentwatch.ui", "static")]), name="static"),
    ]


__all__ = ["COOKIE", "ui_routes"]
