"""The REST API in-process: sessions with filters and cursors, traces, errors, keys and projects."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}


@pytest.fixture
def pipeline(db_url: str) -> Iterator[Pipeline]:
    store = Store(db_url)
    store.migrate()
    p = Pipeline(Settings(database_url=db_url, decode_workers=0), store)
    yield p
    p.store.close()


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline.settings, pipeline)) as c:
        yield c


def send_sessions(client: TestClient, n: int, headers: dict[str, str] | None = None, **kw) -> list:  # type: ignore[no-untyped-def]
    rng = random.Random()
    specs = []
    for i in range(n):
        request, spec = agent_session_request(rng, start_ns=T0 + i * 60 * 10**9, tool_calls=2, **kw)
        response = client.post("/v1/traces", content=request.SerializeToString(), headers={**PB, **(headers or {})})
        assert response.status_code == 200, response.text
        specs.append(spec)
    return specs


def test_sessions_newest_first_with_cursor_pages(client: TestClient) -> None:
    specs = send_sessions(client, 7)
    seen = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/sessions", params=params).json()
        seen.extend(item["session_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [s.session_id for s in reversed(specs)]


def test_session_fields_and_filters(client: TestClient) -> None:
    refund = send_sessions(client, 2, intent="refund", service_version="1.0.0")
    other = send_sessions(client, 1, intent="billing", service_version="2.0.0", service="billing-agent",
                          user_id="user-9")
    item = client.get("/api/v1/sessions", params={"intent": "billing"}).json()["items"]
    assert [i["session_id"] for i in item] == [other[0].session_id]
    s = item[0]
    expected_keys = {"session_id", "project", "service", "agent_name", "agent_version", "intent", "user_id",
                     "start_time", "end_time", "duration_ms", "turns", "llm_calls", "tool_calls", "tool_errors",
                     "tokens_in", "tokens_out", "cost_usd", "error", "flagged", "sampled", "complete", "trace_ids"}
    assert expected_keys <= set(s)
    assert (s["service"], s["agent_version"], s["user_id"], s["project"]) == ("billing-agent", "2.0.0", "user-9",
                                                                              "default")
    assert (s["tokens_in"], s["tokens_out"]) == (other[0].tokens_in, other[0].tokens_out)
    assert s["start_time"].endswith("Z") and s["trace_ids"] == [other[0].trace_id]
    by_version = client.get("/api/v1/sessions", params={"agent_version": "1.0.0"}).json()["items"]
    assert {i["session_id"] for i in by_version} == {r.session_id for r in refund}
    assert client.get("/api/v1/sessions", params={"service": "billing-agent"}).json()["items"][0]["session_id"] == \
        other[0].session_id
    # Sessions started at T0, T0+1m (refund) and T0 (billing, its own sequence): since/until on start_time.
    window = client.get("/api/v1/sessions", params={"since": "2026-01-01T00:00:30Z",
                                                    "until": "2026-01-01T00:02:00Z"}).json()["items"]
    assert [i["session_id"] for i in window] == [refund[1].session_id]
    assert len(client.get("/api/v1/sessions", params={"complete": "false"}).json()["items"]) == 3
    assert client.post("/api/v1/admin/flush").json()["completed_sessions"] == 3
    assert client.get("/api/v1/sessions", params={"complete": "false"}).json()["items"] == []
    assert client.get("/api/v1/sessions", params={"flagged": "true"}).json()["items"] == []


def test_session_detail_and_trace(client: TestClient) -> None:
    [spec] = send_sessions(client, 1)
    body = client.get(f"/api/v1/sessions/{spec.session_id}").json()
    assert set(body) == {"session", "spans", "scores"}
    [root] = body["spans"]
    assert root["kind"] == "agent" and root["parent_span_id"] is None
    assert {c["kind"] for c in root["children"]} == {"llm", "tool", "guardrail"}
    assert all(c["turn_index"] == 0 for c in root["children"])
    trace = client.get(f"/api/v1/traces/{spec.trace_id.upper()}").json()
    assert sorted(s["span_id"] for s in trace["spans"]) == sorted(spec.span_ids)
    assert "children" not in trace["spans"][0]


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/api/v1/sessions/does-not-exist", 404, "not_found"),
    ("/api/v1/traces/00000000000000000000000000000001", 404, "not_found"),
    ("/api/v1/sessions?limit=0", 400, "bad_request"),
    ("/api/v1/sessions?limit=1001", 400, "bad_request"),
    ("/api/v1/sessions?since=yesterday", 400, "bad_request"),
    ("/api/v1/sessions?complete=maybe", 400, "bad_request"),
    ("/api/v1/sessions?cursor=%%%", 400, "bad_request"),
    ("/api/v1/sessions?colour=red", 400, "bad_request"),
    ("/api/v1/nothing-here", 404, "not_found"),
])
def test_errors_use_the_error_envelope(client: TestClient, path: str, status: int, code: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"status": "ready"}
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v1/traces", "/v1/logs", "/api/v1/sessions", "/api/v1/sessions/{session_id}",
                 "/api/v1/traces/{trace_id}", "/api/v1/admin/flush", "/healthz", "/readyz"):
        assert path in spec["paths"]


def test_keys_scope_data_to_their_project(pipeline: Pipeline, client: TestClient) -> None:
    # Before any key exists, data goes to the default project without one.
    [before] = send_sessions(client, 1)
    _, key_a = pipeline.store.create_key("team-a")
    _, key_b = pipeline.store.create_key("team-b")
    pipeline.auth.refresh()
    a = {"authorization": f"Bearer {key_a}"}
    b = {"x-api-key": key_b}

    # Once a key exists, everything but health and readiness needs one.
    assert client.get("/api/v1/sessions").status_code == 401
    assert client.post("/v1/traces", content=b"", headers=PB).status_code == 401
    assert client.post("/api/v1/admin/flush").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/v1/sessions", headers={"authorization": "Bearer aw_wrong"}).status_code == 401

    [spec_a] = send_sessions(client, 1, headers=a)
    [spec_b] = send_sessions(client, 1, headers=b)
    items_a = client.get("/api/v1/sessions", headers=a).json()["items"]
    assert [(i["session_id"], i["project"]) for i in items_a] == [(spec_a.session_id, "team-a")]
    items_b = client.get("/api/v1/sessions", headers=b).json()["items"]
    assert [i["session_id"] for i in items_b] == [spec_b.session_id]
    # A never reads B's session or trace, even knowing the ids.
    assert client.get(f"/api/v1/sessions/{spec_b.session_id}", headers=a).status_code == 404
    assert client.get(f"/api/v1/traces/{spec_b.trace_id}", headers=a).status_code == 404
    assert client.get(f"/api/v1/sessions/{before.session_id}", headers=a).status_code == 404

    revoked = pipeline.store.revoke_key(key_a[:10])
    assert revoked.revoked_at is not None
    pipeline.auth.refresh()
    assert client.get("/api/v1/sessions", headers=a).status_code == 401
    assert client.get("/api/v1/sessions", headers=b).status_code == 200


def test_metrics_in_prometheus_format(client: TestClient) -> None:
    send_sessions(client, 2)
    client.post("/api/v1/admin/flush")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    values = {s.name: s.value for family in text_string_to_metric_families(response.text) for s in family.samples}
    assert values["agentwatch_ingest_spans_accepted_total"] == 2 * 8
    assert values["agentwatch_evaluations_queued"] == 0
    assert values["agentwatch_writer_commits_total"] >= 1
