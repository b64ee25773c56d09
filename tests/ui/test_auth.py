"""The dashboard with API keys: it asks for one once, keeps it in an HttpOnly cookie and shows only its project."""

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
from agentwatch.ui import COOKIE

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}


@pytest.fixture
def client(db_url: str) -> Iterator[tuple[TestClient, Pipeline]]:
    store = Store(db_url)
    store.migrate()
    pipeline = Pipeline(Settings(database_url=db_url, decode_workers=0), store)
    with TestClient(create_app(pipeline.settings, pipeline), base_url="http://127.0.0.1:4318") as c:
        yield c, pipeline
    store.close()


def send(client: TestClient, key: str, n: int) -> list[str]:
    rng = random.Random()
    ids = []
    for i in range(n):
        request, spec = agent_session_request(rng, start_ns=T0 + i * 60 * 10**9, tool_calls=1)
        response = client.post("/v1/traces", content=request.SerializeToString(),
                               headers={**PB, "authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        ids.append(spec.session_id)
    assert client.post("/api/v1/admin/flush", headers={"authorization": f"Bearer {key}"}).status_code == 200
    return ids


def test_no_keys_means_no_sign_in(client: tuple[TestClient, Pipeline]) -> None:
    c, _ = client
    assert c.get("/").status_code == 200
    page = c.get("/login")
    assert page.status_code == 200 and "no sign-in is needed" in page.text


def test_keys_ask_once_and_scope_every_page_to_the_keys_project(client: tuple[TestClient, Pipeline]) -> None:
    c, pipeline = client
    _, key_a = pipeline.store.create_key("team-a")
    _, key_b = pipeline.store.create_key("team-b")
    pipeline.auth.refresh()
    mine = send(c, key_a, 2)
    theirs = send(c, key_b, 3)

    for path in ("/", "/sessions", "/alerts", f"/sessions/{mine[0]}", "/evaluators"):
        response = c.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")

    wrong = c.post("/login", data={"key": "aw_not-a-key", "next": "/sessions"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert COOKIE not in wrong.cookies
    foreign = c.post("/login", data={"key": key_a}, headers={"origin": "http://evil.example"}, follow_redirects=False)
    assert foreign.status_code == 403

    signed = c.post("/login", data={"key": key_a, "next": "https://evil.example/sessions"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/sessions"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
        "Strict", "strict")

    listed = c.get("/sessions", params={"range": "30d"})
    assert listed.status_code == 200
    assert all(sid in listed.text for sid in mine)
    assert not any(sid in listed.text for sid in theirs)
    assert "team-a" in listed.text and "team-b" not in listed.text
    assert c.get(f"/sessions/{theirs[0]}").status_code == 404
    assert c.get(f"/sessions/{mine[0]}").status_code == 200
    # ?project= cannot reach another project once keys exist: the key decides.
    assert not any(sid in c.get("/sessions", params={"project": "team-b", "range": "30d"}).text for sid in theirs)

    out = c.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    assert c.get("/", follow_redirects=False).status_code == 303


def test_a_revoked_key_sends_back_to_sign_in(client: tuple[TestClient, Pipeline]) -> None:
    c, pipeline = client
    key, plaintext = pipeline.store.create_key("team-a")
    pipeline.store.create_key("team-b")  # keys stay in force after the first one is revoked
    pipeline.auth.refresh()
    assert c.post("/login", data={"key": plaintext}, follow_redirects=False).status_code == 303
    assert c.get("/").status_code == 200
    pipeline.store.revoke_key(str(key.id))
    pipeline.auth.refresh()
    response = c.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
