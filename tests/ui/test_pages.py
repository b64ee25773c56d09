"""The dashboard's pages against a server filled by a replay: each page answers, and shows what the API answers.

The pages mark what they show with ``data-*`` attributes (alert ids, SLO
values, session ids, span ids, template ids, evaluator versions), which these
tests read back and compare with the API's JSON.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from typing import Any

import httpx
import pytest
from ui_harness import Filled, Replays


@pytest.fixture(scope="module")
def filled(replays: Replays, engine: str) -> Filled:
    return replays.get(engine)


def attrs(page: str, name: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(rf'{name}="([^"]*)"', page)]


def all_items(filled: Filled, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = filled.api(path, limit=1000, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_every_page_answers_html_with_only_its_own_assets(filled: Filled) -> None:
    alert = filled.api("/api/v1/alerts")["items"][0]
    session_id = filled.api("/api/v1/sessions", limit=1)["items"][0]["session_id"]
    paths = ["/", "/dimensions", "/dimensions?evaluator=tool_use", "/alerts", "/alerts?state=firing",
             f"/alerts/{alert['id']}", "/sessions", "/sessions?flagged=true", f"/sessions/{session_id}", "/clusters",
             "/evaluators", "/?range=7d", "/?range=1h", "/dimensions?range=30d", "/clusters?range=6h", "/review",
             "/review?state=all&reason=flagged", f"/review?alert={alert['id']}"]
    for path in paths:
        response = httpx.get(filled.url + path, timeout=60)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        for url in re.findall(r'(?:src|href)="(https?:[^"]*)"', page):
            assert url.startswith(filled.url), (path, url)  # links to itself only: nothing from a CDN
        assert "<script src=\"/static/app.js\"" in page
    for asset in ("/static/app.css", "/static/app.js"):
        assert httpx.get(filled.url + asset, timeout=10).status_code == 200


def test_overview_shows_every_slo_and_the_firing_alerts_as_the_api_does(filled: Filled) -> None:
    page = filled.page("/", range="30d").text
    firing = [a["id"] for a in filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]]
    assert firing, "the replay's incidents fire alerts"
    section = page.split('<section id="firing">')[1].split('<section id="slos">')[0]
    assert [int(i) for i in attrs(section, "data-alert-id")] == firing
    slos = filled.api("/api/v1/slos")["items"]
    assert {s["name"] for s in slos} == {"response-time", "goal-completion", "refund-policy"}
    shown = Counter(zip(attrs(page, "data-slo"), (float(v) if v else None for v in attrs(page, "data-value")),
                        strict=True))
    assert shown == Counter((s["name"], s["value"]) for s in slos)
    assert "refund-policy" in page and "objective" in page and "system" in page


def test_overview_filters_by_service_keep_only_matching_alerts(filled: Filled) -> None:
    page = filled.page("/", service="no-such-service").text
    shown = attrs(page.split('<section id="slos">')[0], "data-alert-id")
    firing = filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]
    expected = [str(a["id"]) for a in firing if not a["labels"]["service"]]
    assert shown == expected


def test_sessions_list_pages_and_filters_as_the_api_does(filled: Filled) -> None:
    page = filled.page("/sessions", range="30d").text
    ids = attrs(page, "data-session-id")
    first = filled.api("/api/v1/sessions", limit=50)
    assert ids == [s["session_id"] for s in first["items"]]
    cursor = html.unescape(re.search(r'class="next" href="[^"]*cursor=([^"&]+)', page).group(1))  # type: ignore[union-attr]
    second = filled.page("/sessions", range="30d", cursor=cursor).text
    assert attrs(second, "data-session-id") == [
        s["session_id"] for s in filled.api("/api/v1/sessions", limit=50, cursor=first["next_cursor"])["items"]]

    failing = filled.page("/sessions", range="30d", failing="tool_use").text
    api_failing = filled.api("/api/v1/sessions", failing="tool_use", limit=50)["items"]
    assert api_failing and attrs(failing, "data-session-id") == [s["session_id"] for s in api_failing]
    for item in api_failing[:5]:
        scores = filled.api(f"/api/v1/sessions/{item['session_id']}")["scores"]
        assert any(s["evaluator"] == "tool_use" and s["passed"] is False for s in scores)
    flagged = filled.page("/sessions", range="30d", flagged="true", intent="refund").text
    api_flagged = filled.api("/api/v1/sessions", flagged="true", intent="refund", limit=50)["items"]
    assert attrs(flagged, "data-session-id") == [s["session_id"] for s in api_flagged]


def test_session_page_shows_spans_messages_tools_and_the_scorecard(filled: Filled) -> None:
    alert = next(a for a in filled.api("/api/v1/alerts", limit=1000)["items"] if a["kind"] == "rare_event")
    session_id = alert["session_ids"][0]
    detail = filled.api(f"/api/v1/sessions/{session_id}")
    page = filled.page(f"/sessions/{session_id}").text
    spans: list[dict[str, Any]] = []
    stack = list(detail["spans"])
    while stack:
        span = stack.pop()
        spans.append(span)
        stack.extend(span["children"])
    assert sorted(attrs(page, "data-span-id")) == sorted(s["span_id"] for s in spans)
    assert sorted(attrs(page, "data-evaluator")) == sorted(s["evaluator"] for s in detail["scores"])
    text = html.unescape(page)
    for score in detail["scores"]:
        assert score["reason"] in text and score["evaluator_version"][:12] in text
    tool = next(s for s in spans if s["kind"] == "tool" and s["tool_name"] == "refund_api")
    assert tool["tool_args"] and str(next(iter(tool["tool_args"].values()))) in text
    for trace_id in detail["session"]["trace_ids"]:
        assert f'id="trace-{trace_id}"' in page


def test_trace_link_leads_to_its_session(filled: Filled) -> None:
    alert = next(a for a in filled.api("/api/v1/alerts", limit=1000)["items"] if a["trace_ids"])
    trace_id = alert["trace_ids"][0]
    response = httpx.get(f"{filled.url}/traces/{trace_id}", timeout=30)
    assert response.status_code == 303
    session_id = filled.api(f"/api/v1/traces/{trace_id}")["spans"][0]["session_id"]
    assert response.headers["location"].startswith(f"/sessions/{session_id}?")
    assert response.headers["location"].endswith(f"#trace-{trace_id}")


def test_dimensions_figures_are_the_scores_the_api_lists(filled: Filled) -> None:
    page = filled.page("/dimensions", range="24h", evaluator="tool_use").text  # the whole replay, hourly
    scores = [s for s in all_items(filled, "/api/v1/scores", evaluator="tool_use") if not s["shadow"]]
    samples = int(re.search(r'class="samples">([\d,]+)<', page).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert samples == len(scores)
    failed = sum(1 for s in scores if s["passed"] is False)
    rate = float(re.search(r'class="failure-rate">([\d.]+)%<', page).group(1))  # type: ignore[union-attr]
    assert rate == pytest.approx(100 * failed / len(scores), abs=0.006)
    assert '<polyline class="line"' in page and "<svg" in page
    versions = {e["version"] for e in filled.api("/api/v1/evaluators")["items"] if e["name"] == "tool_use"}
    assert any(v[:8] in page for v in versions)


def test_clusters_and_evaluators_match_the_api(filled: Filled) -> None:
    page = filled.page("/clusters", range="30d").text
    api = filled.api("/api/v1/clusters", limit=25)["items"]
    assert api and [int(i) for i in attrs(page, "data-template-id")] == [c["id"] for c in api]
    totals = [int(v.replace(",", "")) for v in re.findall(r'class="total">([\d,]+)<', page)]
    assert totals == [c["count"] for c in api]
    text = html.unescape(page)
    assert all(c["template"] in text for c in api)

    evaluators = filled.api("/api/v1/evaluators")["items"]
    page = filled.page("/evaluators").text
    assert sorted(attrs(page, "data-version")) == sorted(e["version"] for e in evaluators)
    assert sorted(set(attrs(page, "data-evaluator"))) == sorted({e["name"] for e in evaluators})


def test_acknowledge_and_silence_from_the_alert_page(filled: Filled) -> None:
    firing = filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]
    target = next(a for a in firing if not a["acknowledged_at"])
    forged = httpx.post(f"{filled.url}/alerts/{target['id']}/ack", data={"by": "mallory"},
                        headers={"origin": "http://elsewhere.example"}, timeout=30)
    assert forged.status_code == 403
    assert filled.api(f"/api/v1/alerts/{target['id']}")["acknowledged_at"] is None

    response = httpx.post(f"{filled.url}/alerts/{target['id']}/ack", data={"by": "dana"},
                          headers={"origin": filled.url}, timeout=30)
    assert response.status_code == 303
    after = filled.api(f"/api/v1/alerts/{target['id']}")
    assert after["acknowledged_by"] == "dana" and after["acknowledged_at"]
    assert "dana" in filled.page(f"/alerts/{target['id']}").text

    missing = httpx.post(f"{filled.url}/alerts/{target['id']}/silence", data={"duration": "1h", "author": "dana"},
                         timeout=30)
    assert missing.status_code == 400 and "comment" in missing.text
    silenced = httpx.post(f"{filled.url}/alerts/{target['id']}/silence",
                          data={"duration": "4h", "author": "dana", "comment": "INC-12"}, timeout=30)
    assert silenced.status_code == 303
    silences = filled.api("/api/v1/silences")["items"]
    assert any(s["comment"] == "INC-12" and s["matchers"]["rule"] == target["rule"] for s in silences)
    assert filled.api(f"/api/v1/alerts/{target['id']}")["silenced_until"]
    assert "INC-12" in filled.page("/alerts").text


def test_bad_input_gets_a_page_naming_it(filled: Filled) -> None:
    response = filled.page("/", range="2y")
    assert response.status_code == 400 and "range" in response.text and "24h" in response.text
    response = filled.page("/sessions/no-such-session")
    assert response.status_code == 404 and "no-such-session" in html.unescape(response.text)
    assert filled.page("/alerts/123456").status_code == 404
    assert filled.page("/alerts/abc").status_code == 404
    assert filled.page("/dimensions", evaluator="nope").status_code == 404
    assert filled.page("/traces/ffffffffffffffffffffffffffffffff").status_code == 404
    response = httpx.post(f"{filled.url}/alerts/1/silence", data={"duration": "9d", "author": "a", "comment": "b"},
                          timeout=30)
    assert response.status_code == 400 and "duration" in response.text


def test_review_queue_and_calibration_match_the_api(filled: Filled) -> None:
    page = filled.page("/review", evaluator="goal_completion").text
    queue = filled.api("/api/v1/review", evaluator="goal_completion", limit=20)["items"]
    assert queue and attrs(page, "data-session-id") == [q["session"]["session_id"] for q in queue]
    target = queue[-1]["session"]["session_id"]
    bad = httpx.post(f"{filled.url}/review/label", data={"session_id": target, "evaluator": "goal_completion",
                                                         "verdict": "maybe"}, timeout=30)
    assert bad.status_code == 400 and "verdict" in bad.text
    assert filled.api("/api/v1/labels", session_id=target)["items"] == []
    done = httpx.post(f"{filled.url}/review/label", data={
        "session_id": target, "evaluator": "goal_completion", "verdict": "false_positive", "note": "fine really",
        "author": "rev", "back": "/review?evaluator=goal_completion&cursor=x"}, timeout=30)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/review?evaluator=goal_completion&notice=")
    label = filled.api("/api/v1/labels", session_id=target)["items"][0]
    assert (label["verdict"], label["note"], label["author"]) == ("false_positive", "fine really", "rev")
    after = filled.page("/review", evaluator="goal_completion").text
    assert target not in attrs(after, "data-session-id")

    runs = filled.api("/api/v1/calibration-runs", evaluator="goal_completion", limit=1)["items"]
    assert runs
    evaluators = filled.page("/evaluators").text
    assert f'data-run-id="{runs[0]["id"]}"' in evaluators
    assert f'data-run-id="{runs[0]["id"]}"' in after
