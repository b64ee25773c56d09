"""The OpenAPI 3.1 description of the HTTP contract served so far."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}

_SESSION = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"}, "project": {"type": "string"}, "service": {"type": ["string", "null"]},
        "agent_name": {"type": ["string", "null"]}, "agent_version": {"type": ["string", "null"]},
        "intent": {"type": ["string", "null"]}, "user_id": {"type": ["string", "null"]},
        "start_time": {"type": "string", "format": "date-time"}, "end_time": {"type": "string", "format": "date-time"},
        "duration_ms": {"type": "number"}, "turns": {"type": "integer"}, "spans": {"type": "integer"},
        "llm_calls": {"type": "integer"}, "tool_calls": {"type": "integer"}, "tool_errors": {"type": "integer"},
        "tokens_in": {"type": "integer"}, "tokens_out": {"type": "integer"}, "cost_usd": {"type": "number"},
        "work_ms": {"type": "number", "description": "Summed model, tool, retrieval and embedding span durations"},
        "error": {"type": "boolean"}, "flagged": {"type": "boolean"}, "sampled": {"type": "boolean"},
        "complete": {"type": "boolean"}, "trace_ids": {"type": "array", "items": {"type": "string"}},
    },
}

_SPAN = {
    "type": "object",
    "description": "The normalized span of the ingest conventions; times as start_time/end_time.",
    "properties": {
        "trace_id": {"type": "string"}, "span_id": {"type": "string"}, "parent_span_id": {"type": ["string", "null"]},
        "name": {"type": "string"}, "kind": {"type": "string"}, "session_id": {"type": "string"},
        "start_time": {"type": "string", "format": "date-time"}, "end_time": {"type": "string", "format": "date-time"},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}},
    },
    "additionalProperties": True,
}


_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_LABELS = {"type": "object", "properties": {"service": {"type": "string"}, "agent_version": {"type": "string"},
                                            "intent": {"type": "string"}},
           "description": "An empty string: the alert is not narrowed by that label."}
_ALERT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": ["drift", "new_cluster", "rare_event", "burn_rate", "calibration", "no_data",
                          "evaluator_errors"]},
        "rule": {"type": "string"}, "dimension": {"type": "string"}, "evaluator": {"type": "string"},
        "evaluator_version": {"type": "string"}, "severity": {"enum": ["page", "ticket"]},
        "state": {"enum": ["firing", "resolved"]},
        "started_at": {**_TIME, "description": "Event time: the watermark at the first check at which it held"},
        "detected_at": {**_TIME, "description": "Wall time it was opened"},
        "resolved_at": {**_NULLABLE_TIME, "description": "Event time"},
        "summary": {"type": "string"}, "labels": _LABELS,
        "figures": {"type": "object", "description": "observed, baseline, z, n, burn_rates, estimate, ci95, ..."},
        "session_ids": {"type": "array", "items": {"type": "string"}},
        "trace_ids": {"type": "array", "items": {"type": "string"}},
        "link": {"type": "string"}, "owner": {"type": ["string", "null"]},
        "acknowledged_at": _NULLABLE_TIME, "acknowledged_by": {"type": ["string", "null"]},
        "silenced_until": _NULLABLE_TIME,
        "dedup_key": {"type": "string", "description": "Stable across episodes; the PagerDuty dedup_key"},
    },
}
_MATCHERS = {
    "type": "object",
    "description": "Every matcher must equal the alert's field; at least one.",
    "properties": {"kind": {"type": "string"}, "rule": {"type": "string"}, "evaluator": {"type": "string"},
                   "severity": {"enum": ["page", "ticket"]}, "dimension": {"type": "string"}, "labels": _LABELS},
    "additionalProperties": False,
}
_SILENCE = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "matchers": _MATCHERS, "author": {"type": "string"},
                   "comment": {"type": "string"}, "created_at": _TIME, "expires_at": _TIME,
                   "active": {"type": "boolean"}},
}


def _alert_paths() -> dict[str, Any]:
    alert = {"$ref": "#/components/schemas/Alert"}
    silence = {"$ref": "#/components/schemas/Silence"}
    alert_id = _param("alert_id", "alert id", {"type": "integer"}, where="path")
    page = [_param("limit", "page size, 1 to 1000", {"type": "integer", "default": 100}),
            _param("cursor", "opaque cursor from next_cursor")]

    def items(schema: dict[str, Any]) -> dict[str, Any]:
        return _json({"type": "object", "properties": {"items": {"type": "array", "items": schema},
                                                       "next_cursor": {"type": ["string", "null"]}}})

    return {
        "/api/v1/alerts": {"get": {
            "summary": "Alerts, newest first (by started_at)",
            "parameters": [_param("state", "firing or resolved", {"enum": ["firing", "resolved"]}),
                           _param("kind", "alert kind"),
                           _param("since", "started_at at or after (RFC 3339)", _TIME), *page],
            "responses": {"200": items(alert), **_ERRORS},
        }},
        "/api/v1/alerts/{alert_id}": {"get": {
            "summary": "One alert",
            "parameters": [alert_id],
            "responses": {"200": _json(alert), "404": _json(_ERROR, "No such alert"), **_ERRORS},
        }},
        "/api/v1/alerts/{alert_id}/ack": {"post": {
            "summary": "Acknowledge an alert: no more repeat notifications (a second ack keeps the first)",
            "parameters": [alert_id],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"by": {"type": "string"}}}}}},
            "responses": {"200": _json(alert), "404": _json(_ERROR, "No such alert"), **_ERRORS},
        }},
        "/api/v1/silences": {"get": {
            "summary": "Silences, newest first: the active ones, or all with all=true",
            "parameters": [_param("all", "expired ones too", {"type": "boolean"}), *page],
            "responses": {"200": items(silence), **_ERRORS},
        }, "post": {
            "summary": "Silence the alerts matching every matcher until expires_at (at most 24h ahead)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["matchers", "author", "comment"],
                "properties": {"matchers": _MATCHERS, "author": {"type": "string"}, "comment": {"type": "string"},
                               "expires_at": _TIME,
                               "duration": {"type": "string", "description": "instead of expires_at: 30m, 2h"}}}}}},
            "responses": {"201": _json({"allOf": [silence, {"type": "object", "properties": {
                "matched_alerts": {"type": "array", "items": {"type": "integer"},
                                   "description": "ids of the firing alerts it silenced"}}}]}), **_ERRORS},
        }},
    }


def _param(name: str, description: str, schema: dict[str, Any] | None = None, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema or {"type": "string"}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {"400": _json(_ERROR, "Bad request"), "401": _json(_ERROR, "API key missing or invalid")}


_LIST = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                          "next_cursor": {"type": ["string", "null"]}}}
_PAGE = [_param("limit", "page size, 1 to 1000", {"type": "integer", "default": 100}),
         _param("cursor", "opaque cursor from next_cursor")]
_VERDICTS = ["correct", "real_failure", "false_positive", "false_negative", "edge_case"]


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _feedback_paths() -> dict[str, Any]:
    """The review queue, labels, datasets and calibration runs (agentwatch.api.feedback)."""
    name = _param("name", "dataset name", where="path")
    version = _param("version", "a version number, or latest", where="path")
    listed = {"200": _json(_LIST), **_ERRORS}
    return {
        "/api/v1/review": {"get": {
            "summary": "Flagged sessions, sessions behind alerts and a stratified sample of passing ones, newest first",
            "parameters": [_param("evaluator", "dimension"), _param("evaluator_version", "evaluator version"),
                           _param("alert", "only the sessions of this alert", {"type": "integer"}),
                           _param("owner", "only the evaluators this owner owns"),
                           _param("reason", "flagged, alert or sample"),
                           _param("state", "unreviewed (default), reviewed or all"),
                           _param("sample_rate", "share of passing scores sampled per evaluator (default 0.05)",
                                  {"type": "number"}), *_PAGE],
            "responses": listed}},
        "/api/v1/review/summary": {"get": {
            "summary": "The oldest flagged session without a label and its age (wall time since flagged)",
            "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/v1/labels": {
            "post": {
                "summary": "A reviewer's verdict on an evaluator's score of a session; re-runs its calibration",
                "requestBody": _body({"session_id": {"type": "string"}, "evaluator": {"type": "string"},
                                      "verdict": {"enum": _VERDICTS}, "expected_score": {"type": "number"},
                                      "note": {"type": "string"}, "author": {"type": "string"}},
                                     ["session_id", "evaluator", "verdict"]),
                "responses": {"201": _json({"type": "object"}), "404": _json(_ERROR, "No such session"),
                              **_ERRORS}},
            "get": {"summary": "Labels, newest first",
                    "parameters": [_param("session_id", "session id"), _param("evaluator", "dimension"), *_PAGE],
                    "responses": listed}},
        "/api/v1/datasets": {
            "get": {"summary": "Datasets with their latest version", "responses": listed},
            "post": {"summary": "A new, empty dataset",
                     "requestBody": _body({"name": {"type": "string"}, "description": {"type": "string"},
                                           "floors": {"type": "object",
                                                      "additionalProperties": {"type": "number"}}}, ["name"]),
                     "responses": {"201": _json({"type": "object"}), "409": _json(_ERROR, "It exists"),
                                   **_ERRORS}}},
        "/api/v1/datasets/{name}": {"get": {"summary": "One dataset", "parameters": [name],
                                            "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/api/v1/datasets/{name}/items": {"post": {
            "summary": "Add cases: always a new version (the dataset is made if new)",
            "parameters": [name],
            "requestBody": _body({"sessions": {"type": "array"}, "cases": {"type": "array"},
                                  "from_labels": {"type": ["boolean", "object"]},
                                  "conversations": {"type": "array"}, "expected": {"type": "object"},
                                  "reward_dimension": {"type": "string"}, "author": {"type": "string"},
                                  "note": {"type": "string"}, "create": {"type": "boolean"}}),
            "responses": {"201": _json({"type": "object"}), "200": _json({"type": "object"}), **_ERRORS}}},
        "/api/v1/datasets/{name}/versions": {"get": {"summary": "Versions, newest first", "parameters": [name],
                                                     "responses": listed}},
        "/api/v1/datasets/{name}/versions/{version}/items": {"get": {
            "summary": "The cases of a version (digests checked)",
            "parameters": [name, version, _param("spans", "false leaves the spans out", {"type": "boolean"}),
                           *_PAGE],
            "responses": listed}},
        "/api/v1/datasets/{name}/versions/{version}/export": {"get": {
            "summary": "A version as JSON lines: a header (pins, floors, digest), then one case a line",
            "parameters": [name, version],
            "responses": {"200": {"description": "application/x-ndjson"}, **_ERRORS}}},
        "/api/v1/calibration-runs": {
            "get": {"summary": "Calibration runs, newest first",
                    "parameters": [_param("evaluator", "dimension"), _param("evaluator_version", "version"),
                                   _param("dataset", "dataset name"), _param("source", "dataset or labels"), *_PAGE],
                    "responses": listed},
            "post": {"summary": "Run an evaluator version on a dataset version and store its agreement",
                     "requestBody": _body({"evaluator": {"type": "string"}, "dataset": {"type": "string"},
                                           "evaluator_version": {"type": "string"},
                                           "target_fnr": {"type": "number"}, "target_fpr": {"type": "number"}},
                                          ["evaluator", "dataset"]),
                     "responses": {"201": _json({"type": "object"}), **_ERRORS}}},
        "/api/v1/calibration-runs/{run_id}": {"get": {
            "summary": "One calibration run", "parameters": [_param("run_id", "run id", where="path")],
            "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
    }


def openapi_spec(version: str) -> dict[str, Any]:
    otlp = {
        "requestBody": {"required": True, "content": {"application/x-protobuf": {}, "application/json": {}}},
        "responses": {
            "200": {"description": "Committed (partial_success lists rejected items)"},
            "400": {"description": "Body does not decode (google.rpc.Status)"},
            "413": {"description": "Body over the size cap"},
            "415": {"description": "Unsupported content type"},
            "429": {"description": "In-flight budget full; see Retry-After"},
            "503": {"description": "Store unavailable; see Retry-After"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "agentwatch", "version": version},
        "components": {
            "schemas": {"Error": _ERROR, "Session": _SESSION, "Span": _SPAN, "Alert": _ALERT, "Silence": _SILENCE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}, {}],
        "paths": {
            "/v1/traces": {"post": {"summary": "OTLP/HTTP traces", **otlp}},
            "/v1/logs": {"post": {"summary": "OTLP/HTTP logs (GenAI events)", **otlp}},
            "/api/v1/sessions": {"get": {
                "summary": "Sessions, newest first",
                "parameters": [
                    _param("service", "service.name"), _param("agent_version", "agent version"),
                    _param("intent", "intent"), _param("user_id", "user id"),
                    _param("since", "start_time at or after (RFC 3339)", {"type": "string", "format": "date-time"}),
                    _param("until", "start_time before (RFC 3339)", {"type": "string", "format": "date-time"}),
                    _param("flagged", "flagged sessions only", {"type": "boolean"}),
                    _param("complete", "complete or open sessions", {"type": "boolean"}),
                    _param("failing", "sessions with a failing score of this evaluator"),
                    _param("limit", "page size, 1 to 1000", {"type": "integer", "default": 100}),
                    _param("cursor", "opaque cursor from next_cursor"),
                ],
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
                    "next_cursor": {"type": ["string", "null"]}}}), **_ERRORS},
            }, "delete": {
                "summary": "Erase one user's data in the key's project",
                "description": "Removes the sessions of the user (sessions.user_id, or any span's user id; an "
                               "e-mail address also matches its redaction mark), their spans, log records, "
                               "scores, queued evaluations and labels, and scrubs their ids from alerts and "
                               "cluster examples, in one transaction. Rollups (counts and sums) stay. "
                               "Erasing again answers zeros.",
                "parameters": [{**_param("user_id", "the user whose data to erase"), "required": True}],
                "responses": {"200": _json({"type": "object", "required": ["removed"], "properties": {
                    "removed": {"type": "object", "properties": {
                        name: {"type": "integer"} for name in ("sessions", "spans", "scores", "labels")}}}}),
                    **_ERRORS},
            }},
            "/api/v1/sessions/{session_id}": {"get": {
                "summary": "One session with its span tree",
                "parameters": [_param("session_id", "session id", where="path")],
                "responses": {"200": _json({"type": "object", "properties": {
                    "session": {"$ref": "#/components/schemas/Session"},
                    "spans": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}},
                    "scores": {"type": "array", "items": {"type": "object"}}}}),
                    "404": _json(_ERROR, "No such session"), **_ERRORS},
            }},
            "/api/v1/traces/{trace_id}": {"get": {
                "summary": "The spans of one trace",
                "parameters": [_param("trace_id", "32 hex characters", where="path")],
                "responses": {"200": _json({"type": "object", "properties": {
                    "spans": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}}}}),
                    "404": _json(_ERROR, "No such trace"), **_ERRORS},
            }},
            "/api/v1/admin/flush": {"post": {
                "summary": "Advance the watermark past the last event and complete every open session",
                "responses": {"200": _json({"type": "object"}), **_ERRORS},
            }},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": _json({"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness", "security": [],
                                "responses": {"200": _json({"type": "object"}), "503": _json({"type": "object"})}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}},
            **_feedback_paths(),
            "/metrics": {"get": {"summary": "Prometheus metrics of the server",
                                 "responses": {"200": {"description": "Prometheus text format"}}}},
            **_alert_paths(),
            "/api/v1/slos": {"get": {
                "summary": "Each SLO (and series of a grouped one) at the monitor's latest tick: value, target, "
                           "error budget left, burn rates",
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "layer": {"enum": ["system", "objective", "failure_mode"]},
                        "target": {"type": "number"}, "value": {"type": ["number", "null"]},
                        "error_budget_left": {"type": "number"}, "labels": _LABELS,
                        "burn_rates": {"type": "object", "additionalProperties": {"type": ["number", "null"]}}}}},
                    "next_cursor": {"type": "null"}, "as_of": _NULLABLE_TIME}}), **_ERRORS},
            }},
            "/api/v1/clusters": {"get": {
                "summary": "Failure templates mined from errors and evaluator reasons, newest first",
                "parameters": [_param("limit", "At most this many (default 100, max 1000)"),
                               _param("cursor", "The next_cursor of the previous page")],
                "responses": {"200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "source": {"enum": ["tool_error", "span_error", "guardrail",
                                                                        "evaluator"]},
                        "subject": {"type": "string"}, "template": {"type": "string"},
                        "first_seen": _TIME, "last_seen": _TIME, "count": {"type": "integer"},
                        "weighted_count": {"type": "number"}, "count_last_hour": {"type": ["integer", "null"]},
                        "baseline": {"type": "boolean"}, "example": {"type": ["object", "null"]}}}},
                    "next_cursor": {"type": ["string", "null"]}}}), **_ERRORS},
            }},
        },
    }
