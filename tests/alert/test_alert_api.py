"""``/api/v1/alerts`` and ``/api/v1/silences`` in-process: filters, cursors, ack, silences, errors, projects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alert_helpers import MINUTE, T0, candidate
from sqlalchemy import delete, insert
from starlette.testclient import TestClient

from agentwatch.alert import store as alert_store
from agentwatch.api.app import create_app
from agentwatch.pipeline import Pipeline
from agentwatch.settings import Settings
from agentwatch.store import models as m
from agentwatch.store.models import utcnow
from agentwatch.store.store import Store

PUBLIC = "https://aw.example.com"


@pytest.fixture(scope="module")
def pipeline(module_db: tuple[str, Any]) -> Iterator[Pipeline]:
    store = Store(module_db[0])
    store.migrate()
    p = Pipeline(Settings(database_url=module_db[0], decode_workers=0, public_url=PUBLIC), store)
    yield p
    p.store.close()


@pytest.fixture(scope="module")
def app_client(pipeline: Pipeline) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline.settings, pipeline)) as c:
        yield c


@pytest.fixture
def client(pipeline: Pipeline, app_client: TestClient) -> TestClient:
    with pipeline.store.engine.begin() as conn:
        for table in (m.notifications, m.silences, m.alerts):
            conn.execute(delete(table))
    return app_client


def open_alerts(pipeline: Pipeline, tick_ns: int, *candidates: Any, project_id: int | None = None,
                checked: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    with pipeline.store.engine.begin() as conn:
        events = alert_store.reconcile(conn, project_id or pipeline.default_project_id, tick_ns, list(candidates),
                                       checked or set(), public_url=PUBLIC, now=utcnow())
    return [e.alert for e in events]


def test_list_filters_cursor_and_one(pipeline: Pipeline, client: TestClient) -> None:
    [drift] = open_alerts(pipeline, T0, candidate())
    [rare] = open_alerts(pipeline, T0 + MINUTE, candidate(kind="rare_event", rule="refund-policy", severity="ticket"))
    [cluster] = open_alerts(pipeline, T0 + 2 * MINUTE, candidate(kind="new_cluster", rule="templates"))
    open_alerts(pipeline, T0 + 3 * MINUTE, checked={("drift", "faithfulness-drop")})  # resolves the drift alert

    page = client.get("/api/v1/alerts").json()
    assert [a["id"] for a in page["items"]] == [cluster["id"], rare["id"], drift["id"]]
    assert page["next_cursor"] is None
    first = page["items"][2]
    assert first["state"] == "resolved" and first["resolved_at"] == "2026-01-01T00:03:00.000000000Z"
    assert first["link"] == f"{PUBLIC}/api/v1/alerts/{drift['id']}"

    firing = client.get("/api/v1/alerts", params={"state": "firing"}).json()["items"]
    assert [a["id"] for a in firing] == [cluster["id"], rare["id"]]
    assert [a["id"] for a in client.get("/api/v1/alerts", params={"kind": "rare_event"}).json()["items"]] == \
        [rare["id"]]
    since = client.get("/api/v1/alerts", params={"since": "2026-01-01T00:01:00Z"}).json()["items"]
    assert [a["id"] for a in since] == [cluster["id"], rare["id"]]

    seen, cursor = [], None
    while True:
        got = client.get("/api/v1/alerts", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [a["id"] for a in got["items"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert seen == [cluster["id"], rare["id"], drift["id"]]

    one = client.get(f"/api/v1/alerts/{rare['id']}").json()
    assert one == {**rare, "link": one["link"]} and one["kind"] == "rare_event"
    for path, status, words in [
        ("/api/v1/alerts/999999", 404, "alert 999999 not found"),
        ("/api/v1/alerts/abc", 404, "not found"),
        ("/api/v1/alerts?state=open", 400, "state:"),
        ("/api/v1/alerts?kind=spike", 400, "kind:"),
        ("/api/v1/alerts?since=yesterday", 400, "since:"),
        ("/api/v1/alerts?limit=0", 400, "limit:"),
        ("/api/v1/alerts?cursor=zzz", 400, "cursor"),
        ("/api/v1/alerts?colour=red", 400, "colour"),
    ]:
        response = client.get(path)
        assert response.status_code == status, path
        assert words in response.json()["error"]["message"], path


def test_acknowledge(pipeline: Pipeline, client: TestClient) -> None:
    [a, b] = open_alerts(pipeline, T0, candidate(), candidate(rule="second"))
    acked = client.post(f"/api/v1/alerts/{a['id']}/ack", json={"by": "ana"})
    assert acked.status_code == 200
    body = acked.json()
    assert body["id"] == a["id"] and body["acknowledged_by"] == "ana" and body["acknowledged_at"].endswith("Z")
    assert client.post(f"/api/v1/alerts/{a['id']}/ack", json={"by": "bob"}).json()["acknowledged_by"] == "ana"
    anonymous = client.post(f"/api/v1/alerts/{b['id']}/ack")
    assert anonymous.status_code == 200 and anonymous.json()["acknowledged_at"] is not None
    assert client.post("/api/v1/alerts/999999/ack").status_code == 404
    bad = client.post(f"/api/v1/alerts/{a['id']}/ack", content=b"[1]")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert client.post(f"/api/v1/alerts/{a['id']}/ack", json={"by": 7}).json()["error"]["message"].startswith("by:")


def test_silences(pipeline: Pipeline, client: TestClient) -> None:
    [alert] = open_alerts(pipeline, T0, candidate())
    made = client.post("/api/v1/silences", json={"matchers": {"kind": "drift", "labels": {"intent": "refund"}},
                                                 "author": "ana", "comment": "INC-42", "duration": "2h"})
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["matched_alerts"] == [alert["id"]] and silence["active"] is True
    assert silence["matchers"] == {"kind": "drift", "labels": {"intent": "refund"}}
    silenced = client.get(f"/api/v1/alerts/{alert['id']}").json()["silenced_until"]
    assert silenced == silence["expires_at"]

    until = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    other = client.post("/api/v1/silences", json={"matchers": {"rule": "x"}, "author": "bo", "comment": "c",
                                                  "expires_at": until}).json()
    assert other["expires_at"] == until and other["matched_alerts"] == []
    with pipeline.store.engine.begin() as conn:  # an expired one (the API refuses to make one)
        past = utcnow() - timedelta(hours=1)
        conn.execute(insert(m.silences).values(project_id=pipeline.default_project_id, matchers={"kind": "drift"},
                                               author="old", comment="old", created_at=past - timedelta(hours=1),
                                               expires_at=past))
    active = client.get("/api/v1/silences").json()
    assert [s["id"] for s in active["items"]] == [other["id"], silence["id"]] and active["next_cursor"] is None
    everything = client.get("/api/v1/silences", params={"all": "true"}).json()["items"]
    assert [s["author"] for s in everything] == ["old", "bo", "ana"] and everything[0]["active"] is False

    good = {"matchers": {"kind": "drift"}, "author": "ana", "comment": "why", "duration": "1h"}
    far = (datetime.now(timezone.utc) + timedelta(hours=30)).isoformat()
    for change, field in [
        ({"matchers": None}, "matchers"),
        ({"matchers": {"colour": "red"}}, "matchers.colour"),
        ({"matchers": {"severity": "sev1"}}, "matchers.severity"),
        ({"author": None}, "author"),
        ({"comment": "  "}, "comment"),
        ({"duration": "forever"}, "duration"),
        ({"duration": "25h"}, "duration"),
        ({"duration": None}, "expires_at"),
        ({"duration": None, "expires_at": "tomorrow"}, "expires_at"),
        ({"duration": None, "expires_at": far}, "expires_at"),
        ({"duration": None, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": until}, "expires_at"),
        ({"extra": 1}, "unknown field"),
    ]:
        body = {k: v for k, v in {**good, **change}.items() if v is not None}
        response = client.post("/api/v1/silences", json=body)
        assert response.status_code == 400, (change, response.text)
        error = response.json()["error"]
        assert error["code"] == "bad_request" and error["message"].startswith(field), (change, error)
    assert client.post("/api/v1/silences", content=b"not json").status_code == 400
    assert len(client.get("/api/v1/silences").json()["items"]) == 2


def test_openapi_lists_the_alert_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/alerts/{alert_id}/ack", "/api/v1/silences"):
        assert path in spec["paths"]
    assert "post" in spec["paths"]["/api/v1/silences"] and "Alert" in spec["components"]["schemas"]


def test_a_key_sees_only_its_projects_alerts_and_silences(pipeline: Pipeline, client: TestClient) -> None:
    key_a_info, key_a = pipeline.store.create_key("alerts-a")
    key_b_info, key_b = pipeline.store.create_key("alerts-b")
    pipeline.auth.refresh()
    a, b = {"authorization": f"Bearer {key_a}"}, {"x-api-key": key_b}
    try:
        project_a, project_b = pipeline.store.ensure_project("alerts-a"), pipeline.store.ensure_project("alerts-b")
        [alert_a] = open_alerts(pipeline, T0, candidate(), project_id=project_a)
        [alert_b] = open_alerts(pipeline, T0, candidate(), project_id=project_b)
        assert client.get("/api/v1/alerts").status_code == 401
        assert [x["id"] for x in client.get("/api/v1/alerts", headers=a).json()["items"]] == [alert_a["id"]]
        assert [x["id"] for x in client.get("/api/v1/alerts", headers=b).json()["items"]] == [alert_b["id"]]
        assert client.get(f"/api/v1/alerts/{alert_b['id']}", headers=a).status_code == 404
        assert client.post(f"/api/v1/alerts/{alert_b['id']}/ack", headers=a).status_code == 404
        assert client.get(f"/api/v1/alerts/{alert_b['id']}", headers=b).json()["acknowledged_at"] is None

        made = client.post("/api/v1/silences", headers=a, json={"matchers": {"kind": "drift"}, "author": "ana",
                                                                "comment": "c", "duration": "30m"}).json()
        assert made["matched_alerts"] == [alert_a["id"]]
        assert client.get(f"/api/v1/alerts/{alert_b['id']}", headers=b).json()["silenced_until"] is None
        assert client.get("/api/v1/silences", headers=b).json()["items"] == []
        assert [s["id"] for s in client.get("/api/v1/silences", headers=a).json()["items"]] == [made["id"]]
    finally:
        pipeline.store.revoke_key(str(key_a_info.id))
        pipeline.store.revoke_key(str(key_b_info.id))
        pipeline.auth.refresh()
