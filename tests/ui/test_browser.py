"""The dashboard in real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

Against the replay-filled SQLite server: every page loads with no script
error and no request leaving the server, an on-call engineer follows a
firing alert to the trace behind it, acknowledges it from the page, and the
selectors apply on change. Screenshots go to the test's temporary folder
(``scripts/screenshots.py`` refreshes the ones in docs/).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright import sync_api as playwright_api  # the test extra installs it
from ui_harness import Filled, Replays

from agentwatch.testing import CHROMIUM_ARGS, CHROMIUM_PATH


@pytest.fixture(scope="module")
def filled(replays: Replays) -> Filled:
    return replays.get("sqlite")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert shutil.which(CHROMIUM_PATH), f"{CHROMIUM_PATH} is missing: apt-get install -y chromium (.ci/run does)"
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A page that records script errors and any request to another host (which it refuses)."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        host = urlsplit(base).netloc
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

        def route(r: Any) -> None:
            if urlsplit(r.request.url).netloc == host:
                r.continue_()
            else:
                self.foreign.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any, filled: Filled) -> Iterator[Watched]:
    found = Watched(browser, filled.url)
    yield found
    found.close()
    assert found.errors == [] and found.foreign == []


def test_every_page_loads_in_chromium(filled: Filled, watched: Watched, tmp_path: Path) -> None:
    alert = filled.api("/api/v1/alerts", limit=1)["items"][0]
    session_id = alert["session_ids"][0]
    page = watched.page
    for name, path, heading in [("overview", "/?range=24h", "Firing alerts"), ("dimensions", "/dimensions", "Dimensions"),
                                ("alerts", "/alerts", "Alerts"), ("alert", f"/alerts/{alert['id']}", f"Alert #{alert['id']}"),
                                ("sessions", "/sessions", "Sessions"), ("session", f"/sessions/{session_id}", "Session"),
                                ("clusters", "/clusters", "Failure clusters"), ("evaluators", "/evaluators", "Evaluators")]:
        response = page.goto(filled.url + path)
        assert response is not None and response.status == 200, path
        assert heading in page.locator("main").inner_text(), path
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert len(list(tmp_path.glob("*.png"))) == 8


def test_overview_shows_the_slos_and_alerts_the_api_has(filled: Filled, watched: Watched) -> None:
    page = watched.page
    page.goto(filled.url + "/")
    rows = page.locator("tr.slo")
    slos = filled.api("/api/v1/slos")["items"]
    assert rows.count() == len(slos)
    assert sorted(rows.nth(i).get_attribute("data-slo") for i in range(rows.count())) == sorted(s["name"] for s in slos)
    firing = filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]
    shown = page.locator("#firing tr.alert-row")
    assert [int(shown.nth(i).get_attribute("data-alert-id")) for i in range(shown.count())] == [a["id"] for a in firing]


def test_follow_an_alert_to_its_trace(filled: Filled, watched: Watched) -> None:
    page = watched.page
    page.goto(filled.url + "/")
    alert = next(a for a in filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]
                 if a["kind"] == "rare_event")
    page.locator(f'#firing tr[data-alert-id="{alert["id"]}"] a').first.click()
    page.wait_for_url(re.compile(rf"/alerts/{alert['id']}"))
    assert alert["summary"] in page.locator("p.summary").inner_text()
    page.locator("a.trace-link").first.click()
    page.wait_for_url(re.compile(r"/sessions/.*#trace-"))
    trace_id = alert["trace_ids"][0]
    turn = page.locator(f"#trace-{trace_id}")
    assert "highlight" in (turn.get_attribute("class") or "")
    session_id = filled.api(f"/api/v1/traces/{trace_id}")["spans"][0]["session_id"]
    assert session_id in page.locator("h1").inner_text()
    failing = page.locator("tr.score-row.fail")
    api_failing = [s["evaluator"] for s in filled.api(f"/api/v1/sessions/{session_id}")["scores"]
                   if s["passed"] is False and not s["shadow"]]
    assert alert["evaluator"] in api_failing
    assert sorted(failing.nth(i).get_attribute("data-evaluator") for i in range(failing.count())) == sorted(api_failing)
    spans = turn.locator("details.span")
    assert spans.count() >= 3
    tool = turn.locator("details.span.kind-tool").first
    tool.locator("> summary").click()
    assert tool.locator("pre.tool-args").is_visible()


def test_acknowledge_from_the_alert_page(filled: Filled, watched: Watched) -> None:
    alert = next(a for a in filled.api("/api/v1/alerts", state="firing", limit=1000)["items"]
                 if not a["acknowledged_at"])
    page = watched.page
    page.goto(f"{filled.url}/alerts/{alert['id']}")
    page.fill("input[name=by]", "oncall-ana")
    page.click("button#ack")
    page.wait_for_url(re.compile(r"notice=acknowledged"))
    assert "oncall-ana" in page.locator("dd.acked").inner_text()
    assert filled.api(f"/api/v1/alerts/{alert['id']}")["acknowledged_by"] == "oncall-ana"


def test_selectors_apply_on_change(filled: Filled, watched: Watched) -> None:
    page = watched.page
    page.goto(filled.url + "/sessions")
    page.select_option("select[name=range]", "7d")
    page.wait_for_url(re.compile(r"range=7d"))
    page.select_option("select[name=failing]", "tool_use")
    page.wait_for_url(re.compile(r"failing=tool_use"))
    assert "range=7d" in page.url
    ids = page.locator("tr.session-row")
    api = filled.api("/api/v1/sessions", failing="tool_use", limit=50)["items"]
    assert [ids.nth(i).get_attribute("data-session-id") for i in range(ids.count())] == [s["session_id"] for s in api]
    page.locator("nav >> text=Dimensions").click()
    page.wait_for_url(re.compile(r"/dimensions\?.*range=7d"))


def test_label_a_session_in_one_key_press_and_add_it_to_a_dataset(filled: Filled, watched: Watched) -> None:
    page = watched.page
    page.goto(filled.url + "/review?evaluator=tool_use")
    queue = filled.api("/api/v1/review", evaluator="tool_use", limit=20)["items"]
    items = page.locator("article.review-item")
    assert queue and [items.nth(i).get_attribute("data-session-id") for i in range(items.count())] == [
        q["session"]["session_id"] for q in queue]
    first = queue[0]["session"]["session_id"]
    page.keyboard.press("2")  # real failure, for the focused (first) session's tool_use
    page.wait_for_selector("#notice")
    assert f"labelled {first} for tool_use: real_failure" in page.locator("#notice").inner_text()
    labels = filled.api("/api/v1/labels", session_id=first)["items"]
    assert [(lb["evaluator"], lb["verdict"]) for lb in labels] == [("tool_use", "real_failure")]
    assert first not in [i.get_attribute("data-session-id") for i in page.locator("article.review-item").all()]

    second = page.locator("article.review-item").nth(1).get_attribute("data-session-id")
    page.fill("#dataset-name", "ui-regressions")
    page.locator("main h1").click()  # keys go to the page, not the text field
    page.keyboard.press("j")
    page.keyboard.press("d")
    page.keyboard.press("1")  # correct, and add it to the dataset
    page.wait_for_selector("#notice")
    assert "added to ui-regressions version 1" in page.locator("#notice").inner_text()
    found = {d["name"]: d for d in filled.api("/api/v1/datasets")["items"]}
    assert found["ui-regressions"]["case_count"] == 1
    cases = filled.api("/api/v1/datasets/ui-regressions/versions/latest/items", spans="false")["items"]
    assert [c["case_id"] for c in cases] == [second]

    runs = filled.api("/api/v1/calibration-runs", evaluator="tool_use", limit=1)["items"]
    assert runs, "labels run the evaluator's calibration"
    card = page.locator('.calibrations .calibration[data-evaluator="tool_use"]')
    assert card.get_attribute("data-run-id") == str(runs[0]["id"])
    confusion = runs[0]["metrics"]["confusion"]
    assert card.locator("td.tp").inner_text() == str(confusion["tp"])
    assert card.locator("td.tn").inner_text() == str(confusion["tn"])
