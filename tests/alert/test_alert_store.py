"""The alert lifecycle, silences, acknowledgement and the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alert_helpers import MINUTE, NOW, T0, candidate
from sqlalchemy import Engine, select, update

from agentwatch.alert import store as alert_store
from agentwatch.alert.routes import Match as RouteMatch
from agentwatch.alert.routes import Notifier, Route, Routes
from agentwatch.alert.types import MAX_EXAMPLES
from agentwatch.errors import BadRequest, NotFound
from agentwatch.store import models as m

P = 1  # project id
DRIFT = ("drift", "faithfulness-drop")


def reconcile(db: Engine, tick_ns: int, candidates: list, checked: set | None = None,  # type: ignore[type-arg]
              keep: set[str] | None = None, now=NOW, project_id: int = P):  # type: ignore[no-untyped-def]
    with db.begin() as conn:
        return alert_store.reconcile(conn, project_id, tick_ns, candidates, checked if checked is not None else {DRIFT},
                                     keep_keys=keep or set(), public_url="https://aw.example.com/", now=now)


def rows(db: Engine, table=m.alerts) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def test_lifecycle_open_update_resolve_reopen(db: Engine) -> None:
    [opened] = reconcile(db, T0, [candidate()])
    alert = opened.alert
    assert opened.action == "trigger" and alert["state"] == "firing"
    assert alert["started_at"] == "2026-01-01T00:00:00.000000000Z"  # the tick, not a window start
    assert alert["detected_at"].startswith("2026-01-01T00:30:00")
    assert alert["link"] == f"https://aw.example.com/api/v1/alerts/{alert['id']}"
    assert alert["labels"] == {"service": "support-agent", "agent_version": "1.4.0", "intent": "refund"}
    expected = {"id", "kind", "rule", "dimension", "evaluator", "evaluator_version", "severity", "state",
                "started_at", "detected_at", "resolved_at", "summary", "labels", "figures", "session_ids",
                "trace_ids", "link", "owner", "acknowledged_at", "acknowledged_by", "silenced_until", "dedup_key"}
    assert set(alert) == expected
    assert alert["resolved_at"] is None and alert["silenced_until"] is None and alert["owner"] == "quality-team"

    # Still holding: updated in place, no event; example ids merged in order.
    later = NOW + timedelta(minutes=5)
    assert reconcile(db, T0 + 5 * MINUTE, [candidate(summary="worse", figures={"z": -6.0},
                                                     session_ids=["s2", "s3"], trace_ids=["t2"])], now=later) == []
    [row] = rows(db)
    assert (row["summary"], row["figures"], row["session_ids"], row["trace_ids"]) == (
        "worse", {"z": -6.0}, ["s1", "s2", "s3"], ["t1", "t2"])
    assert row["updated_at"] == later and row["started_ns"] == T0

    # Not held, but its rule was not checked at this tick (or the checker keeps it): stays firing.
    assert reconcile(db, T0 + 6 * MINUTE, [], checked={("drift", "other-rule")}) == []
    assert reconcile(db, T0 + 7 * MINUTE, [], keep={alert["dedup_key"]}) == []
    assert rows(db)[0]["state"] == "firing"

    # Checked and not held: resolved at the tick.
    [resolved] = reconcile(db, T0 + 8 * MINUTE, [])
    assert resolved.action == "resolve" and resolved.alert["id"] == alert["id"]
    assert resolved.alert["state"] == "resolved"
    assert resolved.alert["resolved_at"] == "2026-01-01T00:08:00.000000000Z"

    # The same condition again: a new alert (new id, same dedup key).
    [again] = reconcile(db, T0 + 20 * MINUTE, [candidate()])
    assert again.action == "trigger" and again.alert["id"] != alert["id"]
    assert again.alert["dedup_key"] == alert["dedup_key"]
    assert again.alert["started_at"] == "2026-01-01T00:20:00.000000000Z"
    assert [r["state"] for r in rows(db)] == ["resolved", "firing"]


def test_examples_are_capped_and_candidate_start_is_kept(db: Engine) -> None:
    many = [f"s{i}" for i in range(MAX_EXAMPLES + 10)]
    [opened] = reconcile(db, T0, [candidate(kind="rare_event", rule="refund-policy", session_ids=many,
                                            started_ns=T0 - 3 * MINUTE)], checked={("rare_event", "refund-policy")})
    assert opened.alert["session_ids"] == many[:MAX_EXAMPLES]
    assert opened.alert["started_at"] == "2025-12-31T23:57:00.000000000Z"
    # Two candidates of one key in one tick: one alert, the last summary, the ids of both.
    first, second = candidate(rule="twice", session_ids=["a"]), candidate(rule="twice", summary="b", session_ids=["b"])
    [twice] = reconcile(db, T0, [first, second], checked=set())
    assert (twice.alert["summary"], twice.alert["session_ids"]) == ("b", ["a", "b"])
    assert first.session_ids == ["a"]  # the caller's candidates are left as they were


def test_alerts_of_other_projects_are_untouched(db: Engine) -> None:
    reconcile(db, T0, [candidate()], project_id=1)
    reconcile(db, T0, [candidate()], project_id=2)
    [resolved] = reconcile(db, T0 + MINUTE, [], project_id=2)
    assert {(r["project_id"], r["state"]) for r in rows(db)} == {(1, "firing"), (2, "resolved")}
    assert resolved.alert["id"] == rows(db)[1]["id"]


def test_silences_and_acknowledgement(db: Engine) -> None:
    [first] = reconcile(db, T0, [candidate()])
    with db.begin() as conn:
        silence = alert_store.create_silence(conn, P, {"kind": "drift", "labels": {"service": "support-agent"}},
                                             "ana", "deploying a fix", NOW + timedelta(hours=2), NOW)
    assert silence["matched_alerts"] == [first.alert["id"]]
    assert rows(db)[0]["silenced_until"] == NOW + timedelta(hours=2)
    # A new matching alert opens silenced; one that does not match does not.
    opened = reconcile(db, T0 + MINUTE, [candidate(), candidate(rule="r2"), candidate(kind="no_data", rule="nd")],
                       checked=set())
    by_rule = {e.alert["rule"]: e.alert for e in opened}
    assert by_rule["r2"]["silenced_until"] == "2026-01-01T02:30:00Z"
    assert by_rule["nd"]["silenced_until"] is None

    with db.connect() as conn:
        active, _ = alert_store.list_silences(conn, P, now=NOW)
        later, _ = alert_store.list_silences(conn, P, now=NOW + timedelta(hours=3))
        everything, _ = alert_store.list_silences(conn, P, False, now=NOW + timedelta(hours=3))
    assert [s["id"] for s in active] == [silence["id"]] and later == [] and len(everything) == 1

    with db.begin() as conn:
        acked = alert_store.acknowledge(conn, P, first.alert["id"], "ana", NOW)
        again = alert_store.acknowledge(conn, P, first.alert["id"], "bob", NOW + timedelta(minutes=1))
        with pytest.raises(NotFound):
            alert_store.acknowledge(conn, 2, first.alert["id"], "eve", NOW)
        with pytest.raises(NotFound):
            alert_store.get_alert(conn, P, 999_999)
    assert (acked["acknowledged_by"], acked["acknowledged_at"]) == ("ana", NOW)
    assert (again["acknowledged_by"], again["acknowledged_at"]) == ("ana", NOW)


SILENCE_ERRORS = [
    ({}, "a", "c", 1, "matchers"),
    ({"colour": "red"}, "a", "c", 1, "matchers.colour"),
    ({"kind": "weird"}, "a", "c", 1, "matchers.kind"),
    ({"labels": {"region": "eu"}}, "a", "c", 1, "matchers.labels.region"),
    ({"kind": "drift"}, "", "c", 1, "author"),
    ({"kind": "drift"}, "a", None, 1, "comment"),
    ({"kind": "drift"}, "a", "c", -1, "expires_at"),
    ({"kind": "drift"}, "a", "c", 25, "expires_at"),
]


def test_silence_validation_names_the_field(db: Engine) -> None:
    for matchers, author, comment, hours, field in SILENCE_ERRORS:
        with db.begin() as conn, pytest.raises(BadRequest) as err:
            alert_store.create_silence(conn, P, matchers, author, comment, NOW + timedelta(hours=hours), NOW)
        assert err.value.message.startswith(f"{field}:"), err.value.message
    assert rows(db, m.silences) == []


def test_silence_matches() -> None:
    alert = {"kind": "drift", "rule": "r", "severity": "page", "evaluator": "e", "dimension": "d",
             "labels": {"service": "s", "agent_version": "", "intent": "i"}}
    assert alert_store.silence_matches({"kind": "drift", "labels": {"intent": "i"}}, alert)
    assert alert_store.silence_matches({"labels": {"agent_version": ""}}, alert)
    assert not alert_store.silence_matches({"kind": "drift", "severity": "ticket"}, alert)
    assert not alert_store.silence_matches({"labels": {"service": "other"}}, alert)


ROUTES = Routes((
    Route(RouteMatch(severity=frozenset({"page"})), (Notifier("pagerduty", "pd", url="http://x", routing_key="k"),),
          continue_=True),
    Route(RouteMatch(kind=frozenset({"drift"})), (Notifier("slack", "chan", url="http://y"),)),
))


def outbox(db: Engine) -> list[tuple[int, str, str]]:
    return [(r["alert_id"], r["notifier"], r["event"]) for r in rows(db, m.notifications)]


def test_outbox_triggers_resolves_silences_and_inhibition(db: Engine) -> None:
    events = reconcile(db, T0, [candidate(), candidate(kind="no_data", rule="nd", severity="ticket", evaluator="")],
                       checked={DRIFT, ("no_data", "nd")})
    drift_id, nodata_id = (e.alert["id"] for e in events)
    with db.begin() as conn:
        assert alert_store.enqueue_notifications(conn, P, events, ROUTES, now=NOW) == 3
    # Page: pagerduty and (continue) slack; the no_data ticket matches no route: the log notifier.
    assert outbox(db) == [(drift_id, "pd", "trigger"), (drift_id, "chan", "trigger"), (nodata_id, "log", "trigger")]

    # A silenced alert is not notified when it opens; its resolve goes nowhere.
    with db.begin() as conn:
        alert_store.create_silence(conn, P, {"rule": "quiet"}, "ana", "noisy", NOW + timedelta(hours=1), NOW)
    quiet = reconcile(db, T0 + MINUTE, [candidate(rule="quiet")], checked=set())
    with db.begin() as conn:
        assert alert_store.enqueue_notifications(conn, P, quiet, ROUTES, now=NOW) == 0

    # Resolves go to the notifiers that had the trigger, and only those.
    ended = reconcile(db, T0 + 2 * MINUTE, [], checked={DRIFT, ("no_data", "nd"), ("drift", "quiet")})
    assert {e.alert["id"] for e in ended} == {drift_id, nodata_id, quiet[0].alert["id"]}
    with db.begin() as conn:
        assert alert_store.enqueue_notifications(conn, P, ended, ROUTES, now=NOW) == 3
    assert outbox(db)[3:] == [(drift_id, "chan", "resolve"), (drift_id, "pd", "resolve"),
                              (nodata_id, "log", "resolve")]

    # Inhibition: a firing calibration alert of the evaluator mutes its drift alerts.
    calibration = reconcile(db, T0 + 3 * MINUTE, [candidate(kind="calibration", rule="judge-agreement",
                                                            severity="ticket")], checked=set())
    drift = reconcile(db, T0 + 3 * MINUTE, [candidate(rule="muted")], checked=set())
    with db.begin() as conn:
        alert_store.enqueue_notifications(conn, P, calibration + drift, ROUTES, now=NOW)
        assert alert_store.inhibitor(conn, P, alert_store.get_alert(conn, P, drift[0].alert["id"])) == \
            calibration[0].alert["id"]
    assert [n for a, n, _ in outbox(db) if a == drift[0].alert["id"]] == []


def test_due_repeats(db: Engine) -> None:
    interval = {"page": 4 * 3600.0, "ticket": 86400.0}
    [page] = reconcile(db, T0, [candidate()])
    [ticket] = reconcile(db, T0, [candidate(rule="t", severity="ticket", kind="new_cluster")], checked=set())
    with db.begin() as conn:
        alert_store.enqueue_notifications(conn, P, [page, ticket], ROUTES, now=NOW)
    base = len(outbox(db))
    with db.begin() as conn:
        assert alert_store.due_repeats(conn, NOW + timedelta(hours=3), interval, ROUTES) == 0
        assert alert_store.due_repeats(conn, NOW + timedelta(hours=4), interval, ROUTES) == 2  # page: pd + chan
        assert alert_store.due_repeats(conn, NOW + timedelta(hours=4, minutes=1), interval, ROUTES) == 0
    assert {(n, e) for a, n, e in outbox(db)[base:]} == {("pd", "repeat"), ("chan", "repeat")}

    # Acknowledged: no more repeats. Ticket: after a day.
    with db.begin() as conn:
        alert_store.acknowledge(conn, P, page.alert["id"], "ana", NOW)
        assert alert_store.due_repeats(conn, NOW + timedelta(hours=24), interval, ROUTES) == 1
    assert outbox(db)[-1] == (ticket.alert["id"], "log", "repeat")

    # Opened while silenced: notified as a trigger once the silence is over.
    with db.begin() as conn:
        alert_store.create_silence(conn, P, {"rule": "later"}, "ana", "x", NOW + timedelta(minutes=30), NOW)
    quiet = reconcile(db, T0, [candidate(rule="later", severity="ticket")], checked=set())
    with db.begin() as conn:
        assert alert_store.enqueue_notifications(conn, P, quiet, ROUTES, now=NOW) == 0
        assert alert_store.due_repeats(conn, NOW + timedelta(minutes=10), interval, ROUTES) == 0
        conn.execute(update(m.alerts).where(m.alerts.c.id == page.alert["id"]).values(state="resolved"))
        assert alert_store.due_repeats(conn, NOW + timedelta(minutes=31), interval, ROUTES) == 1
    assert outbox(db)[-1] == (quiet[0].alert["id"], "chan", "trigger")


# -- hysteresis (keep_firing_for) and episodes -------------------------------------------------------------------

CLUSTER = ("new_cluster", "novel")
SURGE = ("new_cluster", "surge")


def cluster(rule: str = "novel", **kw):  # type: ignore[no-untyped-def]
    values = {"kind": "new_cluster", "rule": rule, "severity": "ticket", "dimension": "tool_error:lookup_order",
              "evaluator": "", "evaluator_version": "", "labels": {"service": "support-agent"},
              "discriminator": "17", "summary": "new failure in lookup_order"}
    values.update(kw)
    return candidate(**values)


def held_reconcile(db: Engine, tick_ns: int, candidates: list, held: dict[str, int],  # type: ignore[type-arg]
                   checked: set | None = None):  # type: ignore[no-untyped-def,type-arg]
    with db.begin() as conn:
        return alert_store.reconcile(conn, P, tick_ns, candidates, checked or {CLUSTER, SURGE, ("drift", "z")},
                                     keep_firing_ns={"new_cluster": 60 * MINUTE}, held=held,
                                     public_url=None, now=NOW)


def test_a_condition_that_flaps_within_keep_firing_for_stays_one_alert(db: Engine) -> None:
    held: dict[str, int] = {}
    # What a replayed import showed: open, gone a minute later, back ten minutes after that, gone again.
    holds = {0: True, 1: False, 2: False, 11: True, 12: True, 13: False}
    events = []
    for minute in range(0, 200):
        events += held_reconcile(db, T0 + minute * MINUTE, [cluster()] if holds.get(minute, False) else [], held)
    assert [e.action for e in events] == ["trigger", "resolve"], "one alert, resolved once"
    [row] = rows(db)
    # It last held at minute 12; it resolves at the first check an hour (keep_firing_for) after that.
    assert row["resolved_ns"] == T0 + 72 * MINUTE and held == {}
    # Without hysteresis the same checks open two alerts, and resolve both.
    with db.begin() as conn:
        conn.execute(m.alerts.delete())
    events = []
    for minute in range(0, 20):
        events += reconcile(db, T0 + minute * MINUTE, [cluster()] if holds.get(minute, False) else [],
                            checked={CLUSTER})
    assert [e.action for e in events].count("trigger") == 2


def test_keep_firing_for_applies_only_to_its_kinds_and_only_to_checked_rules(db: Engine) -> None:
    held: dict[str, int] = {}
    held_reconcile(db, T0, [cluster(), candidate(rule="z")], held)
    assert set(held) == {cluster().dedup_key}, "only kinds with a hold are remembered"
    ended = held_reconcile(db, T0 + MINUTE, [], held)
    assert [e.alert["kind"] for e in ended] == ["drift"], "a drift alert resolves at once"
    # A cluster alert whose condition stopped an hour ago resolves, as one whose rule was checked.
    assert held_reconcile(db, T0 + 59 * MINUTE, [], held) == []
    [gone] = held_reconcile(db, T0 + 60 * MINUTE, [], held)
    assert gone.alert["kind"] == "new_cluster" and gone.alert["resolved_at"] == "2026-01-01T01:00:00.000000000Z"


def test_a_surge_of_an_evaluators_reasons_is_part_of_its_drift_episode_and_muted_for_good(db: Engine) -> None:
    held: dict[str, int] = {}
    drift = candidate(rule="z", evaluator="tool_use", dimension="tool_use")
    surge = cluster("surge", evaluator="tool_use", dimension="evaluator:tool_use", summary="failure surging")
    other = cluster("surge", evaluator="tool_use", dimension="evaluator:tool_use", discriminator="18",
                    labels={"service": "billing-agent"}, summary="another service")
    # Opened at the same tick as the drift page: linked to it, listed, not notified.
    events = held_reconcile(db, T0, [surge, drift, other], held)
    by_kind = {(e.alert["kind"], e.alert["labels"]["service"]): e.alert for e in events}
    drift_id = by_kind[("drift", "support-agent")]["id"]
    linked = by_kind[("new_cluster", "support-agent")]
    assert linked["figures"]["inhibited_by"] == drift_id and f"part of the episode of alert {drift_id}" in linked["summary"]
    assert "inhibited_by" not in by_kind[("new_cluster", "billing-agent")]["figures"], "another service's episode"
    with db.begin() as conn:
        alert_store.enqueue_notifications(conn, P, events, ROUTES, now=NOW)
    notified = {a for a, _, _ in outbox(db)}
    assert drift_id in notified and linked["id"] not in notified
    assert by_kind[("new_cluster", "billing-agent")]["id"] in notified
    # Updated while the drift resolves, the link stays; once the drift has resolved, no late trigger or repeat.
    held_reconcile(db, T0 + 5 * MINUTE, [surge], held)
    with db.begin() as conn:
        row = alert_store.get_alert(conn, P, linked["id"])
        assert row["state"] == "firing" and row["figures"]["inhibited_by"] == drift_id
        assert alert_store.get_alert(conn, P, drift_id)["state"] == "resolved"
        alert_store.due_repeats(conn, NOW + timedelta(days=2), {"page": 3600.0, "ticket": 3600.0}, ROUTES)
    assert linked["id"] not in {a for a, _, _ in outbox(db)}
    # A surge with no firing drift of its evaluator is its own alert.
    [alone] = held_reconcile(db, T0 + 10 * MINUTE, [cluster("surge", evaluator="refund_policy",
                                                            discriminator="19")], held)
    assert "inhibited_by" not in alone.alert["figures"]


def test_a_slow_drift_ticket_during_its_evaluators_burn_page_is_part_of_that_episode(db: Engine) -> None:
    held: dict[str, int] = {}
    checked = {("drift", "cusum"), ("burn_rate", "slo:goal-completion"), SURGE}
    burn = candidate(kind="burn_rate", rule="slo:goal-completion", evaluator="goal_completion",
                     labels={"intent": "plan_change"}, summary="burning")
    ticket = candidate(rule="cusum", severity="ticket", evaluator="goal_completion", dimension="goal_completion",
                       labels={"service": "support-agent", "agent_version": "1.0.0"}, summary="drifting down slowly")
    other_version = candidate(rule="cusum", severity="ticket", evaluator="tool_use", dimension="tool_use",
                              labels={"service": "support-agent", "agent_version": "1.0.0"}, summary="another one")
    events = held_reconcile(db, T0, [ticket, burn, other_version], held, checked)
    by_rule = {(e.alert["rule"], e.alert["evaluator"]): e.alert for e in events}
    burn_id = by_rule[("slo:goal-completion", "goal_completion")]["id"]
    assert by_rule[("cusum", "goal_completion")]["figures"]["inhibited_by"] == burn_id
    assert "inhibited_by" not in by_rule[("cusum", "tool_use")]["figures"], "another evaluator's ticket"
    with db.begin() as conn:
        alert_store.enqueue_notifications(conn, P, events, ROUTES, now=NOW)
        assert alert_store.inhibitor(conn, P, alert_store.get_alert(conn, P, by_rule[("cusum", "goal_completion")]
                                                                     ["id"])) == burn_id
    assert {a for a, _, _ in outbox(db)} == {burn_id, by_rule[("cusum", "tool_use")]["id"]}
    # A surge of the evaluator's reasons later in the same burn is linked too, though no drift fires.
    [surge] = held_reconcile(db, T0 + 5 * MINUTE, [ticket, burn, other_version,
                                                   cluster("surge", evaluator="goal_completion")],
                             held, checked)
    assert surge.alert["figures"]["inhibited_by"] == burn_id
