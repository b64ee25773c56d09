"""Notifiers against loopback HTTP receivers: payloads, retries, Retry-After, giving up, and the counters."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
from alert_helpers import MINUTE, NOW, T0, candidate
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select

from agentwatch.alert import store as alert_store
from agentwatch.alert.notify import Dispatcher
from agentwatch.alert.routes import Routes, load_routes
from agentwatch.store import models as m

P = 1
PD_KEY = "R0UT1NGKEY0000000000000000000001"
RULES = {("drift", "faithfulness-drop")}


def routes_to(*notifiers: dict[str, Any]) -> Routes:
    return load_routes({"routes": [{"notifiers": list(notifiers)}]}, environ={})


def open_and_enqueue(db: Engine, routes: Routes, tick_ns: int = T0, candidates: list[Any] | None = None) -> list[Any]:
    with db.begin() as conn:
        events = alert_store.reconcile(conn, P, tick_ns, candidates if candidates is not None else [candidate()],
                                       RULES, public_url="https://aw.example.com", now=NOW)
        alert_store.enqueue_notifications(conn, P, events, routes, now=NOW)
    return events


def outbox(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(m.notifications).order_by(m.notifications.c.id))]


def counter(dispatcher: Dispatcher, notifier: str, outcome: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(dispatcher)
    return registry.get_sample_value("agentwatch_notifications_total", {"notifier": notifier, "outcome": outcome})


def test_slack_pagerduty_and_webhook_trigger_then_resolve(db: Engine, receiver_factory: Any) -> None:
    slack, pd, hook = receiver_factory(), receiver_factory(), receiver_factory()
    routes = routes_to({"type": "slack", "url": slack.url + "/services/T/B/x"},
                       {"type": "pagerduty", "routing_key": PD_KEY, "url": pd.url + "/v2/enqueue"},
                       {"type": "webhook", "url": hook.url + "/hook", "headers": {"X-Team": "quality"}})
    dispatcher = Dispatcher(db, routes, public_url="https://aw.example.com", poll_s=0.05)
    dispatcher.start()
    try:
        [opened] = open_and_enqueue(db, routes)
        dispatcher.wake()
        assert dispatcher.drain(10)
        alert = opened.alert
        link = f"https://aw.example.com/api/v1/alerts/{alert['id']}"

        [s] = slack.bodies()
        assert s["text"].startswith("FIRING [PAGE] drift faithfulness-drop: faithfulness mean fell")
        blocks = str(s["blocks"])
        for shown in ("faithfulness (version v1)", "service=support-agent", "observed: 0.61", "`s1`", link,
                      "quality-team", "2026-01-01T00:00:00"):
            assert shown in blocks, shown

        [p] = pd.bodies()
        assert pd.requests[0].path == "/v2/enqueue"
        assert (p["routing_key"], p["event_action"], p["dedup_key"]) == (PD_KEY, "trigger", alert["dedup_key"])
        assert p["payload"]["severity"] == "critical" and p["payload"]["class"] == "drift"
        assert p["payload"]["summary"] == "faithfulness mean fell" and p["payload"]["source"] == "agentwatch/support-agent"
        assert p["payload"]["timestamp"] == "2026-01-01T00:00:00.000Z"
        details = p["payload"]["custom_details"]
        assert details["z"] == -5.2 and details["session_ids"] == ["s1", "s2"] and details["labels"]["intent"] == "refund"
        assert p["links"] == [{"href": link, "text": f"agentwatch alert {alert['id']}"}]
        assert (p["client"], p["client_url"]) == ("agentwatch", link)

        [h] = hook.bodies()
        assert (h["version"], h["status"], h["event"]) == (1, "firing", "trigger")
        assert h["alert"]["id"] == alert["id"] and h["alert"]["link"] == link
        assert hook.requests[0].headers["x-team"] == "quality"

        # Resolve: PagerDuty with the same dedup key, Slack a RESOLVED follow-up, the webhook status resolved.
        [resolved] = open_and_enqueue(db, routes, T0 + 10 * MINUTE, [])
        assert resolved.action == "resolve"
        dispatcher.wake()
        assert dispatcher.drain(10)
        assert pd.bodies()[1] == {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": alert["dedup_key"]}
        assert slack.bodies()[1]["text"].startswith("RESOLVED [PAGE] drift")
        assert (hook.bodies()[1]["status"], hook.bodies()[1]["event"]) == ("resolved", "resolve")
        assert hook.bodies()[1]["alert"]["resolved_at"] == "2026-01-01T00:10:00.000000000Z"
        assert {r["state"] for r in outbox(db)} == {"sent"}
        assert counter(dispatcher, "pagerduty", "sent") == 2
    finally:
        dispatcher.stop()


def test_retries_on_429_and_5xx_honour_retry_after_and_keep_trigger_before_resolve(
        db: Engine, receiver_factory: Any) -> None:
    pd = receiver_factory()
    pd.answer((429, {"Retry-After": "7"}), 503)
    routes = routes_to({"type": "pagerduty", "routing_key": PD_KEY, "url": pd.url})
    dispatcher = Dispatcher(db, routes, backoff_s=2.0)
    open_and_enqueue(db, routes)

    assert dispatcher.run_once(NOW) == 1
    [row] = outbox(db)
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 1, NOW + timedelta(seconds=7))
    assert row["last_error"].startswith("HTTP 429")

    # The alert resolves meanwhile: its resolve waits for the trigger.
    open_and_enqueue(db, routes, T0 + MINUTE, [])
    assert dispatcher.run_once(NOW + timedelta(seconds=6)) == 0
    assert len(pd.requests) == 1
    assert dispatcher.run_once(NOW + timedelta(seconds=7)) == 1  # 503: backoff 2 s * 2^(2-1)
    assert outbox(db)[0]["next_attempt_at"] == NOW + timedelta(seconds=11)
    assert dispatcher.run_once(NOW + timedelta(seconds=11)) == 2  # 202, then the resolve in the same pass
    assert [b["event_action"] for b in pd.bodies()] == ["trigger", "trigger", "trigger", "resolve"]
    assert [(r["state"], r["attempts"]) for r in outbox(db)] == [("sent", 3), ("sent", 1)]
    assert counter(dispatcher, "pagerduty", "retried") == 2
    assert counter(dispatcher, "pagerduty", "sent") == 2


def test_no_retry_on_400_and_secrets_are_blanked(db: Engine, receiver_factory: Any) -> None:
    pd = receiver_factory()
    pd.answer((400, {}, f'{{"status": "invalid event", "message": "unknown routing key {PD_KEY}"}}'))
    routes = routes_to({"type": "pagerduty", "routing_key": PD_KEY, "url": pd.url})
    dispatcher = Dispatcher(db, routes, backoff_s=0.01)
    open_and_enqueue(db, routes)
    dispatcher.run_once(NOW)
    dispatcher.run_once(NOW + timedelta(hours=1))
    [row] = outbox(db)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("HTTP 400") and "<redacted>" in row["last_error"]
    assert PD_KEY not in row["last_error"]
    assert len(pd.requests) == 1
    assert counter(dispatcher, "pagerduty", "failed") == 1
    assert counter(dispatcher, "pagerduty", "retried") is None


def test_a_dead_notifier_does_not_block_others_and_is_given_up(db: Engine, receiver_factory: Any) -> None:
    slack = receiver_factory()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    routes = routes_to({"type": "webhook", "name": "dead", "url": dead}, {"type": "slack", "url": slack.url})
    dispatcher = Dispatcher(db, routes, backoff_s=0.01, max_attempts=2)
    open_and_enqueue(db, routes, candidates=[candidate(), candidate(rule="other")])
    dispatcher.run_once(NOW)
    assert len(slack.requests) == 2
    states = {(r["notifier"], r["state"]) for r in outbox(db)}
    assert states == {("dead", "pending"), ("slack", "sent")}
    # The dead notifier was tried once in that pass; its second row waited for its retry.
    assert sorted(r["attempts"] for r in outbox(db) if r["notifier"] == "dead") == [0, 1]
    assert counter(dispatcher, "webhook", "retried") == 1
    dispatcher.run_once(NOW + timedelta(minutes=1))
    dispatcher.run_once(NOW + timedelta(minutes=2))
    dead_rows = [r for r in outbox(db) if r["notifier"] == "dead"]
    assert [r["state"] for r in dead_rows] == ["failed", "failed"]
    assert all("ConnectError" in r["last_error"] and "gave up after 2 attempts" in r["last_error"] for r in dead_rows)
    assert counter(dispatcher, "webhook", "failed") == 2


def test_log_notifier_and_unknown_notifier(db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    routes = Routes()  # no routes: everything to the log
    dispatcher = Dispatcher(db, routes)
    open_and_enqueue(db, routes)
    with caplog.at_level(logging.INFO, logger="agentwatch.alert"):
        assert dispatcher.drain(5)
    [record] = [r for r in caplog.records if r.name == "agentwatch.alert"]
    assert record.levelno == logging.WARNING and '"kind": "drift"' in record.getMessage()
    assert counter(dispatcher, "log", "sent") == 1
    # A row for a notifier since removed from the config is given up, not retried forever.
    open_and_enqueue(db, routes_to({"type": "slack", "name": "gone", "url": "http://127.0.0.1:9/x"}),
                     candidates=[candidate(), candidate(rule="new")])
    dispatcher.run_once(NOW)
    [gone] = [r for r in outbox(db) if r["notifier"] == "gone"]
    assert gone["state"] == "failed" and "no longer configured" in gone["last_error"]


def test_dispatcher_queues_repeats_until_acknowledged(db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    routes = Routes()
    dispatcher = Dispatcher(db, routes, repeat_interval_s={"page": 600.0, "ticket": 3600.0})
    [opened] = open_and_enqueue(db, routes)
    dispatcher.run_once(NOW)
    dispatcher.run_once(NOW + timedelta(minutes=9))
    dispatcher.run_once(NOW + timedelta(minutes=10))
    with db.begin() as conn:
        alert_store.acknowledge(conn, P, opened.alert["id"], "ana", NOW)
    dispatcher.run_once(NOW + timedelta(minutes=30))
    assert [(r["event"], r["state"]) for r in outbox(db)] == [("trigger", "sent"), ("repeat", "sent")]
    assert counter(dispatcher, "log", "sent") == 2
