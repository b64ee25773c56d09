"""``/api/v1/review``, ``/api/v1/labels``, ``/api/v1/datasets`` and ``/api/v1/calibration-runs``.

The feedback loop over HTTP, scoped to the key's project. Labels answer with
the calibration run they triggered; datasets grow by versions (``POST
.../items`` never changes an existing version); a version exports as JSON
lines that ``agentwatch gate --dataset FILE`` reads offline.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentwatch.api.params import only_params as _only
from agentwatch.api.params import query_bool
from agentwatch.api.params import query_limit as _limit
from agentwatch.api.views import score_json, session_json
from agentwatch.errors import BadRequest, NotFound
from agentwatch.feedback import calibration, datasets, review
from agentwatch.pipeline import Pipeline
from agentwatch.store import evaluations, labels
from agentwatch.store import models as m
from agentwatch.timefmt import rfc3339


def _id_cursor(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise BadRequest(f"cursor: not a cursor this endpoint gave: {value!r}")
    return int(value)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def label_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "session_id": row["session_id"], "evaluator": row["evaluator"],
            "evaluator_version": row["evaluator_version"], "verdict": row["verdict"],
            "expected_score": row["expected_score"], "note": row["note"], "author": row["author"],
            "event_time": rfc3339(row["event_time_ns"]), "created_at": rfc3339(row["created_at"])}


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "evaluator": row["evaluator"], "evaluator_version": row["evaluator_version"],
            "source": row["source"], "dataset": row["dataset"], "dataset_version": row["dataset_version"],
            "n": row["n"], "metrics": row["metrics"], "disagreements": row["disagreements"],
            "created_at": rfc3339(row["created_at"])}


def dataset_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "description": row["description"], "floors": row["floors"],
            "latest_version": row.get("latest"), "versions": row.get("versions") or 0,
            "case_count": row.get("case_count", 0), "created_at": rfc3339(row["created_at"])}


def version_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"version": row["version"], "case_count": row["case_count"], "digest": row["digest"],
            "pins": {k: v.get("version") for k, v in row["pins"].items()}, "author": row["author"],
            "note": row["note"], "created_at": rfc3339(row["created_at"])}


def review_items(pipeline: Pipeline, project_id: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queue's items as ``GET /api/v1/review`` answers them: each session with its scores, labels and cases."""
    store = pipeline.store
    engine = store.engine
    ids = [i["session_id"] for i in items]
    s = m.sessions.c
    with engine.connect() as conn:
        rows = {r["session_id"]: dict(r) for r in conn.execute(
            m.sessions.select().where(s.project_id == project_id, s.session_id.in_(ids))).mappings()}
        cases = review.dataset_cases_of(conn, project_id, ids)
    project = store.project_name(project_id)
    out = []
    for item in items:
        row = rows.get(item["session_id"])
        if row is None:
            continue
        scores = [score_json(r) for r in evaluations.session_scores(engine, project_id, item["session_id"])
                  if not r.get("shadow")]
        found = labels.list_labels(engine, project_id, session_id=item["session_id"], limit=100)
        out.append({
            "session": session_json(row, project), "reasons": item["reasons"], "failing": item["failing"],
            "sampled_for": item["sampled_for"], "alert_ids": item["alert_ids"],
            "inclusion_probability": item["inclusion_probability"], "scores": scores,
            "labels": [label_json(lb) for lb in found], "reviewed": bool(found),
            "dataset_cases": cases.get(item["session_id"], []),
        })
    return out


def create_label(pipeline: Pipeline, project_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Store a label (fields as :func:`labels.validate` answers them) and run the labels' calibration of its
    evaluator version; answers ``POST /api/v1/labels``'s body: the label with the run it triggered."""
    engine = pipeline.store.engine
    stored = labels.add_label(engine, project_id, fields)
    out = label_json(stored)
    out["calibration"] = None
    if stored["evaluator_version"]:
        window = pipeline.monitor_config.calibration.window_s
        with engine.begin() as conn:
            found = calibration.labels_run(conn, project_id, pipeline.catalogue, stored["evaluator"],
                                           stored["evaluator_version"],
                                           since_ns=stored["event_time_ns"] - int(window * 1e9))
        if found is not None:
            out["calibration"] = run_json(found)
    return out


def feedback_routes(pipeline: Pipeline) -> list[Route]:
    store = pipeline.store
    engine = store.engine
    auth = pipeline.auth
    catalogue = pipeline.catalogue

    def review_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only(q, {"evaluator", "evaluator_version", "alert", "owner", "reason", "state", "sample_rate", "limit",
                  "cursor"})
        alert = q.get("alert")
        if alert is not None and not alert.isdigit():
            raise BadRequest(f"alert: expected an alert id, got {alert!r}")
        owner = q.get("owner")
        owned = frozenset(s.name for s in catalogue.specs if s.owner == owner) if owner else None
        rate = review.DEFAULT_SAMPLE_RATE
        if q.get("sample_rate"):
            try:
                rate = float(q["sample_rate"])
            except ValueError:
                rate = -1.0
            if not 0.0 <= rate <= 1.0:
                raise BadRequest(f"sample_rate: expected a rate from 0 to 1, got {q['sample_rate']!r}")
        flt = review.ReviewFilter(evaluator=q.get("evaluator") or None, evaluator_version=q.get("evaluator_version")
                                  or None, alert_id=int(alert) if alert else None, evaluators=owned,
                                  reason=q.get("reason") or None, state=q.get("state") or "unreviewed")
        with engine.connect() as conn:
            items, cursor = review.queue(conn, project_id, flt, sample_rate=rate, limit=_limit(q.get("limit")),
                                         cursor=q.get("cursor") or None)
        return JSONResponse({"items": review_items(pipeline, project_id, items), "next_cursor": cursor})

    def review_summary(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        _only(request.query_params, set())
        with engine.connect() as conn:
            oldest = review.oldest_unreviewed(conn, project_id)
        if oldest is None:
            return JSONResponse({"oldest_unreviewed": None})
        from agentwatch.store.models import utcnow

        session_id, flagged_at = oldest
        return JSONResponse({"oldest_unreviewed": {
            "session_id": session_id, "flagged_at": rfc3339(flagged_at),
            "age_seconds": round((utcnow() - flagged_at).total_seconds(), 3)}})

    async def label_create(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        body = await _body(request)
        fields = labels.validate(body)
        return JSONResponse(await asyncio.to_thread(create_label, pipeline, project_id, fields), status_code=201)

    def label_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only(q, {"session_id", "evaluator", "limit", "cursor"})
        limit = _limit(q.get("limit"))
        rows = labels.list_labels(engine, project_id, session_id=q.get("session_id") or None,
                                  evaluator=q.get("evaluator") or None, limit=limit + 1,
                                  before_id=_id_cursor(q.get("cursor")))
        more = len(rows) > limit
        rows = rows[:limit]
        return JSONResponse({"items": [label_json(r) for r in rows],
                             "next_cursor": str(rows[-1]["id"]) if more and rows else None})

    def dataset_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        _only(request.query_params, {"limit", "cursor"})
        with engine.connect() as conn:
            rows = datasets.list_datasets(conn, project_id)
        return JSONResponse({"items": [dataset_json(r) for r in rows], "next_cursor": None})

    async def dataset_create(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        body = await _body(request)
        unknown = set(body) - {"name", "description", "floors"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: name, description, floors)")

        def run() -> dict[str, Any]:
            with engine.begin() as conn:
                return datasets.create_dataset(conn, project_id, body.get("name"),  # type: ignore[arg-type]
                                               body.get("description"), body.get("floors"))

        return JSONResponse(dataset_json(await asyncio.to_thread(run)), status_code=201)

    def dataset_one(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        name = request.path_params["name"]
        with engine.connect() as conn:
            found = [r for r in datasets.list_datasets(conn, project_id) if r["name"] == name]
        if not found:
            raise NotFound(f"dataset {name!r} not found")
        return JSONResponse(dataset_json(found[0]))

    async def dataset_add(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        name = request.path_params["name"]
        body = await _body(request)
        known = {"sessions", "cases", "from_labels", "conversations", "expected", "reward_dimension", "author",
                 "note", "create"}
        unknown = set(body) - known
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        result = await asyncio.to_thread(add_items, project_id, name, body)
        return JSONResponse(result, status_code=201 if result["created"] else 200)

    def add_items(project_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return datasets.add_from_request(engine, pipeline.scorer.load, catalogue, pipeline.options, project_id,
                                         store.project_name(project_id), name, body)

    def _version_of(request: Request) -> int | None:
        raw = request.path_params["version"]
        if raw == "latest":
            return None
        if not raw.isdigit():
            raise NotFound(f"dataset version {raw!r} not found (versions are numbers, or latest)")
        return int(raw)

    def dataset_versions(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        _only(request.query_params, {"limit", "cursor"})
        with engine.connect() as conn:
            rows = datasets.versions(conn, project_id, request.path_params["name"])
        return JSONResponse({"items": [version_json(r) for r in rows], "next_cursor": None})

    def version_items(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only(q, {"limit", "cursor", "spans"})
        limit = _limit(q.get("limit"))
        start = _id_cursor(q.get("cursor")) or 0
        with engine.connect() as conn:
            _, row, cases = datasets.read_version(conn, project_id, request.path_params["name"], _version_of(request))
        page = cases[start:start + limit]
        if query_bool("spans", q.get("spans")) is False:
            page = [{k: v for k, v in c.items() if k != "spans"} for c in page]
        return JSONResponse({"items": page, "version": version_json(row),
                             "next_cursor": str(start + limit) if start + limit < len(cases) else None})

    def version_export(request: Request) -> Response:
        project_id = auth.project_for(request.headers)
        _only(request.query_params, set())
        with engine.connect() as conn:
            dataset, row, cases = datasets.read_version(conn, project_id, request.path_params["name"],
                                                        _version_of(request))
        text = "".join(line + "\n" for line in datasets.export_lines(dataset, row, cases))
        filename = f"{dataset['name']}@{row['version']}.jsonl"
        return Response(text, media_type="application/x-ndjson",
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    def runs_list(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        q = request.query_params
        _only(q, {"evaluator", "evaluator_version", "dataset", "source", "limit", "cursor"})
        limit = _limit(q.get("limit"))
        with engine.connect() as conn:
            rows = calibration.list_runs(conn, project_id, evaluator=q.get("evaluator") or None,
                                         evaluator_version=q.get("evaluator_version") or None,
                                         dataset=q.get("dataset") or None, source=q.get("source") or None,
                                         limit=limit + 1, before_id=_id_cursor(q.get("cursor")))
        more = len(rows) > limit
        rows = rows[:limit]
        return JSONResponse({"items": [run_json(r) for r in rows],
                             "next_cursor": str(rows[-1]["id"]) if more and rows else None})

    def run_one(request: Request) -> JSONResponse:
        project_id = auth.project_for(request.headers)
        raw = request.path_params["run_id"]
        with engine.connect() as conn:
            rows = [r for r in calibration.list_runs(conn, project_id, limit=1,
                                                      before_id=int(raw) + 1 if raw.isdigit() else 0)
                    if str(r["id"]) == raw]
        if not rows:
            raise NotFound(f"calibration run {raw!r} not found")
        return JSONResponse(run_json(rows[0]))

    async def run_create(request: Request) -> JSONResponse:
        project_id = await asyncio.to_thread(auth.project_for, request.headers)
        body = await _body(request)
        known = {"evaluator", "evaluator_version", "dataset", "target_fnr", "target_fpr"}
        unknown = set(body) - known
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        if not isinstance(body.get("evaluator"), str) or not isinstance(body.get("dataset"), str):
            raise BadRequest("evaluator and dataset (NAME or NAME@VERSION): required strings")
        name, version = datasets.parse_ref(body["dataset"])
        targets = {k: body.get(k) for k in ("target_fnr", "target_fpr")}
        for key, value in targets.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0.0 < float(value) < 1.0):
                raise BadRequest(f"{key}: expected a rate between 0 and 1, got {value!r}")
        if targets["target_fnr"] is not None and targets["target_fpr"] is not None:
            raise BadRequest("target_fnr, target_fpr: give one of them")
        fnr = targets["target_fnr"] if targets["target_fpr"] is None else None
        row = await asyncio.to_thread(
            calibration.calibrate, engine, project_id, catalogue, body["evaluator"], name, version,
            evaluator_version=body.get("evaluator_version"), target_fnr=0.05 if fnr is None and
            targets["target_fpr"] is None else fnr, target_fpr=targets["target_fpr"])
        return JSONResponse(run_json(row), status_code=201)

    return [
        Route("/api/v1/review", review_list, methods=["GET"]),
        Route("/api/v1/review/summary", review_summary, methods=["GET"]),
        Route("/api/v1/labels", label_create, methods=["POST"]),
        Route("/api/v1/labels", label_list, methods=["GET"]),
        Route("/api/v1/datasets", dataset_list, methods=["GET"]),
        Route("/api/v1/datasets", dataset_create, methods=["POST"]),
        Route("/api/v1/datasets/{name}", dataset_one, methods=["GET"]),
        Route("/api/v1/datasets/{name}/items", dataset_add, methods=["POST"]),
        Route("/api/v1/datasets/{name}/versions", dataset_versions, methods=["GET"]),
        Route("/api/v1/datasets/{name}/versions/{version}/items", version_items, methods=["GET"]),
        Route("/api/v1/datasets/{name}/versions/{version}/export", version_export, methods=["GET"]),
        Route("/api/v1/calibration-runs", runs_list, methods=["GET"]),
        Route("/api/v1/calibration-runs", run_create, methods=["POST"]),
        Route("/api/v1/calibration-runs/{run_id}", run_one, methods=["GET"]),
    ]
