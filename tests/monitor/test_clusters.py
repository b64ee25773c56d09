"""New failure clusters: the miner over failed spans and failing scores, its restore, and the novel/surge checks."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select

from agentwatch.alert.types import Candidate
from agentwatch.monitor import clusters
from agentwatch.monitor.clusters import Miner
from agentwatch.monitor.config import ClusterConfig
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.models import utcnow
from agentwatch.store.store import Store

S = 1_000_000_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
SVC = "support-agent"
CONFIG = ClusterConfig()
WARM = {SVC}


_counter = iter(range(1, 10**9))


def failed_span(pid: int, end_ns: int, message: str | None, *, tool: str | None = "crm_lookup", kind: str = "tool",
                name: str | None = None, error_type: str | None = None, session: str = "s1", user: str | None = "u1",
                service: str = SVC, success: bool = False) -> dict[str, Any]:
    n = next(_counter)
    return {"project_id": pid, "trace_id": f"{n:032x}", "span_id": f"{n:016x}", "parent_span_id": None,
            "session_id": session, "session_explicit": True, "name": name or f"execute_tool {tool}", "kind": kind,
            "span_kind": 1, "start_ns": end_ns - S, "end_ns": end_ns, "status_code": 1 if success else 2,
            "status_message": message, "success": success, "error_type": error_type, "service": service,
            "user_id": user, "tool_name": tool if kind == "tool" else None, "attributes": {}}


def add_spans(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(m.spans), list(rows))


def mine(store: Store, pid: int, since: int, until: int, miner: Miner, warm: set[str] = WARM) -> int:
    with store.engine.begin() as conn:
        return miner.mine(conn, pid, since, until, warm)


def templates(store: Store, pid: int) -> list[dict[str, Any]]:
    t = m.failure_templates.c
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(m.failure_templates).where(t.project_id == pid)
                                                       .order_by(t.id))]


def hits(store: Store, pid: int) -> list[dict[str, Any]]:
    h = m.template_hits.c
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(m.template_hits).where(h.project_id == pid)
                                                       .order_by(h.id))]


def check(store: Store, pid: int, tick: int, warm: set[str] = WARM, config: ClusterConfig = CONFIG
          ) -> list[Candidate]:
    with store.engine.connect() as conn:
        return clusters.check(conn, pid, tick, config, warm)


# -- mining ---------------------------------------------------------------------------------------------------


def test_the_miner_masks_numbers_and_keeps_sources_and_subjects_apart(db: tuple[Store, int]) -> None:
    store, pid = db
    add_spans(store, [
        failed_span(pid, T0 + 1 * S, "Timeout after 30s fetching order 4411", session="a"),
        failed_span(pid, T0 + 2 * S, "Timeout after 45s fetching order 98", session="b", user="u2"),
        failed_span(pid, T0 + 3 * S, "Timeout after 45s fetching order 98", tool="payments", session="c"),
        failed_span(pid, T0 + 4 * S, "Rate limit reached for 20000 TPM", kind="llm", tool=None, name="chat",
                    error_type="RateLimitError"),
        failed_span(pid, T0 + 5 * S, None, kind="guardrail", tool=None, name="pii_filter"),
        failed_span(pid, T0 + 6 * S, "fine", success=True),  # not a failure
        failed_span(pid, T0 + 61 * S, "Timeout after 10s fetching order 1"),  # the next minute: not mined yet
    ])
    miner = Miner(CONFIG)
    assert mine(store, pid, T0, T0 + MIN, miner) == 5
    rows = templates(store, pid)
    assert [(r["source"], r["subject"], r["template"], r["count"]) for r in rows] == [
        ("tool_error", "crm_lookup", "Timeout after <NUM>s fetching order <NUM>", 2),
        ("tool_error", "payments", "Timeout after <NUM>s fetching order <NUM>", 1),
        ("span_error", "chat", "RateLimitError: Rate limit reached for <NUM> TPM", 1),
        ("guardrail", "pii_filter", "failed without a message", 1),
    ]
    first = rows[0]
    assert (first["first_seen_ns"], first["last_seen_ns"], first["weighted_count"]) == (T0 + S, T0 + 2 * S, 2.0)
    assert not any(r["baseline"] for r in rows), "mined for a warm service: not part of the baseline"
    found = hits(store, pid)
    assert [(h["template_id"], h["session_id"], h["user_id"], h["service"]) for h in found[:2]] == [
        (first["id"], "a", "u1", SVC), (first["id"], "b", "u2", SVC)]
    assert found[0]["message"] == "Timeout after 30s fetching order 4411", "hits keep the raw message"
    assert found[0]["trace_id"] and found[0]["weight"] == 1.0


def test_failing_scores_are_mined_by_the_lead_clause_of_their_reason(db: tuple[Store, int]) -> None:
    store, pid = db
    now = utcnow()
    with store.engine.begin() as conn:
        for i, (sid, reason, passed, probability) in enumerate((
                ("s1", "refund of $120.50 exceeds the $100 limit; items: 3 x widget", False, 0.25),
                ("s2", "refund of $99,000 exceeds the $100 limit\nsee policy 7", False, 1.0),
                ("s3", "refund of $5 within the limit", True, 1.0))):
            conn.execute(insert(m.sessions).values(
                project_id=pid, session_id=sid, service=SVC, agent_version="1.0", intent="refund", user_id=f"u{i}",
                start_ns=T0, end_ns=T0 + (i + 1) * S, spans=1, turns=1, llm_calls=1, tool_calls=0, tool_errors=0,
                errors=0, tokens_in=0, tokens_out=0, agent_tokens_in=0, agent_tokens_out=0, usage_spans=1,
                cost_usd=0.0, complete=True, flagged=False, sampled=False, created_at=now, updated_at=now))
            conn.execute(insert(m.scores).values(
                project_id=pid, session_id=sid, span_id="", evaluator="refund_policy", evaluator_version="v1",
                status="ok", score=0.0 if not passed else 1.0, passed=passed, direction="higher_is_better",
                reason=reason, inclusion_probability=probability, event_time_ns=T0 + (i + 1) * S, shadow=False,
                created_at=now))
    assert mine(store, pid, T0, T0 + MIN, Miner(CONFIG)) == 2
    (row,) = templates(store, pid)
    assert (row["source"], row["subject"], row["template"]) == (
        "evaluator", "refund_policy", "refund of <AMOUNT> exceeds the <AMOUNT> limit")
    assert row["count"] == 2 and row["weighted_count"] == 5.0, "a score sampled at p weighs 1/p"
    assert [(h["session_id"], h["user_id"], h["weight"]) for h in hits(store, pid)] == [("s1", "u0", 4.0),
                                                                                       ("s2", "u1", 1.0)]


def add_scores(store: Store, pid: int, scores: Sequence[tuple[str, str, str]]) -> None:
    """Failing scores (session, evaluator, reason), one second apart, each of its own session and user."""
    now = utcnow()
    with store.engine.begin() as conn:
        for i, (sid, evaluator, reason) in enumerate(scores):
            conn.execute(insert(m.sessions).values(
                project_id=pid, session_id=sid, service=SVC, agent_version="1.0", intent="refund", user_id=f"u{i}",
                start_ns=T0, end_ns=T0 + (i + 1) * S, spans=1, turns=1, llm_calls=1, tool_calls=0, tool_errors=0,
                errors=0, tokens_in=0, tokens_out=0, agent_tokens_in=0, agent_tokens_out=0, usage_spans=1,
                cost_usd=0.0, complete=True, flagged=False, sampled=False, created_at=now, updated_at=now))
            conn.execute(insert(m.scores).values(
                project_id=pid, session_id=sid, span_id="", evaluator=evaluator, evaluator_version="v1",
                status="ok", score=0.0, passed=False, direction="higher_is_better", reason=reason,
                inclusion_probability=1.0, event_time_ns=T0 + (i + 1) * S, shadow=False, created_at=now))


@pytest.mark.parametrize(("reason", "mined"), [
    ("3/4 claims supported; unsupported: turn 1: $241 (money)", "unsupported: turn 1: $241 (money)"),
    ("3/4 claims supported", None),
    ("2 of 5 steps done; 3 failed tool call(s)", None),
    ("3 failed tool call(s)", None),
    ("40% of answers checked", None),
    ("tool lookup_order failed: Timeout (span ab12); tool refund_api failed: 503", "tool lookup_order failed: Timeout "
                                                                                   "(span ab12)"),
    ("refund_api.amount = 120 > 100", "refund_api.amount = 120 > 100"),
    ("500 internal error from the CRM", None),
    ("  \n; over budget: 4 calls", "over budget: 4 calls"),
])
def test_the_mined_clause_is_the_first_that_is_not_a_tally(reason: str, mined: str | None) -> None:
    assert clusters.lead(reason) == mined


def test_only_the_reasons_of_evaluators_whose_reasons_name_failures_are_mined(db: tuple[Store, int]) -> None:
    store, pid = db
    add_scores(store, pid, [
        ("a", "faithfulness", "1/2 claims supported; unsupported: turn 1: $241 (money)"),
        ("b", "helpfulness", "the agent did not answer the question"),
        ("c", "tool_use", "tool lookup_order failed: SchemaVersionMismatch: expected v12 (span 00f067aa0ba902b7)"),
        ("d", "goal_completion", "2 of 3 steps done"),  # a count only: nothing to mine
        ("e", "external:tone", "too curt"),
    ])
    specs = (SimpleNamespace(name="faithfulness", kind="faithfulness"), SimpleNamespace(name="helpfulness", kind="llm"),
             SimpleNamespace(name="tool_use", kind="rule"), SimpleNamespace(name="goal_completion", kind="python"))
    default = clusters.ReasonSources.of(specs, ClusterConfig().reason_kinds)
    assert default == clusters.ReasonSources(frozenset({"tool_use", "goal_completion"}), external=False)
    with store.engine.connect() as conn:
        found = clusters.occurrences(conn, pid, T0, T0 + MIN, default)
        assert [(o.subject, o.message) for o in found] == [
            ("tool_use", "tool lookup_order failed: SchemaVersionMismatch: expected v12 (span 00f067aa0ba902b7)")]
        everything = clusters.ReasonSources.of(specs, ("rule", "python", "llm", "faithfulness", "external"))
        assert [o.subject for o in clusters.occurrences(conn, pid, T0, T0 + MIN, everything)] == [
            "faithfulness", "helpfulness", "tool_use", "external:tone"]
        assert clusters.occurrences(conn, pid, T0, T0 + MIN, clusters.ReasonSources()) == []
    with store.engine.begin() as conn:
        assert Miner(CONFIG).mine(conn, pid, T0, T0 + MIN, WARM, default) == 1
    assert [(r["subject"], r["template"]) for r in templates(store, pid)] == [
        ("tool_use", "tool lookup_order failed: SchemaVersionMismatch: expected v<NUM> (span <HEX>)")]


def test_templates_are_restored_from_the_table_with_the_same_ids(db: tuple[Store, int]) -> None:
    store, pid = db
    messages = ["Timeout after 30s fetching order 4411", "HTTP 503 from upstream crm", "order 12 not found"]
    add_spans(store, [failed_span(pid, T0 + i * S, text) for i, text in enumerate(messages)])
    miner = Miner(CONFIG)
    mine(store, pid, T0, T0 + MIN, miner)
    before = {r["id"]: r["template"] for r in templates(store, pid)}
    assert len(before) == 3
    # The same shapes again, after forget() (a rolled-back tick) and in a new miner (a restart).
    add_spans(store, [failed_span(pid, T0 + MIN + i * S, text.replace("4411", "7").replace("12", "99"))
                      for i, text in enumerate(messages)])
    miner.forget()
    assert mine(store, pid, T0 + MIN, T0 + 2 * MIN, miner) == 3
    add_spans(store, [failed_span(pid, T0 + 2 * MIN + i * S, text) for i, text in enumerate(messages)]
              + [failed_span(pid, T0 + 2 * MIN + 10 * S, "schema version mismatch: expected v2")])
    restarted = Miner(CONFIG)
    assert mine(store, pid, T0 + 2 * MIN, T0 + 3 * MIN, restarted) == 4
    rows = templates(store, pid)
    assert {r["id"]: r["template"] for r in rows[:3]} == before, "same ids, same templates, no duplicates"
    assert [r["count"] for r in rows] == [3, 3, 3, 1]
    assert rows[3]["id"] > max(before) and rows[3]["template"] == "schema version mismatch: expected v<NUM>"
    assert [h["template_id"] for h in hits(store, pid)][-4:] == [r["id"] for r in rows]


def test_the_source_and_subject_are_one_letters_only_token() -> None:
    tokens = {clusters._prefix(source, subject) for source, subject in (
        ("tool_error", "crm:lookup"), ("tool_error", "search_v1"), ("tool_error", "search_v2"),
        ("span_error", "search_v1"), ("evaluator", "refund_policy"))}
    assert len(tokens) == 5, "every (source, subject) its own token"
    assert all(token.isalpha() and token.isascii() and token.islower() for token in tokens)
    assert clusters._prefix("tool_error", "crm:lookup") == clusters._prefix("tool_error", "crm:lookup")


def test_a_subject_with_a_colon_survives_a_restore(db: tuple[Store, int]) -> None:
    store, pid = db
    add_spans(store, [failed_span(pid, T0 + S, "Timeout after 30s", tool="crm:lookup")])
    miner = Miner(CONFIG)
    mine(store, pid, T0, T0 + MIN, miner)
    miner.forget()
    add_spans(store, [failed_span(pid, T0 + MIN + S, "Timeout after 45s", tool="crm:lookup")])
    mine(store, pid, T0 + MIN, T0 + 2 * MIN, miner)
    add_spans(store, [failed_span(pid, T0 + 2 * MIN + S, "Timeout after 50s", tool="crm:lookup")])
    mine(store, pid, T0 + 2 * MIN, T0 + 3 * MIN, Miner(CONFIG))  # a restart
    (row,) = templates(store, pid)
    assert (row["subject"], row["template"], row["count"]) == ("crm:lookup", "Timeout after <NUM>s", 3)
    assert [h["template_id"] for h in hits(store, pid)] == [row["id"]] * 3


def test_tools_whose_names_differ_by_a_digit_are_separate_templates(db: tuple[Store, int]) -> None:
    store, pid = db
    add_spans(store, [failed_span(pid, T0 + S, "Timeout after 30s", tool="search_v1"),
                      failed_span(pid, T0 + 2 * S, "Timeout after 30s", tool="search_v2"),
                      failed_span(pid, T0 + 3 * S, "Timeout after 45s", tool="search_v2")])
    miner = Miner(CONFIG)
    mine(store, pid, T0, T0 + MIN, miner)
    assert [(r["subject"], r["template"], r["count"]) for r in templates(store, pid)] == [
        ("search_v1", "Timeout after <NUM>s", 1), ("search_v2", "Timeout after <NUM>s", 2)]
    # ... and they stay apart after a restore.
    miner.forget()
    add_spans(store, [failed_span(pid, T0 + MIN + S, "Timeout after 5s", tool="search_v1")])
    mine(store, pid, T0 + MIN, T0 + 2 * MIN, miner)
    assert [(r["subject"], r["count"]) for r in templates(store, pid)] == [("search_v1", 2), ("search_v2", 2)]


# -- novel ------------------------------------------------------------------------------------------------------------


def test_novel_fires_once_count_sessions_and_users_are_reached(db: tuple[Store, int]) -> None:
    store, pid = db
    start = T0 + 2 * DAY
    spans = []
    # (tool, [(session, user)...]): five occurrences in three sessions of two users makes it; each other
    # tool misses one of the three gates.
    cases = {
        "enough": [("a", "u1"), ("a", "u1"), ("b", "u1"), ("c", "u2"), ("c", "u2")],
        "few_hits": [("d", "u1"), ("e", "u1"), ("f", "u2"), ("f", "u2")],
        "few_sessions": [("g", "u1"), ("g", "u1"), ("g", "u1"), ("h", "u2"), ("h", "u2")],
        "one_user": [("i", "u1"), ("j", "u1"), ("k", "u1"), ("k", "u1"), ("k", "u1")],
    }
    for tool, occurrences in cases.items():
        for i, (session, user) in enumerate(occurrences):
            spans.append(failed_span(pid, start + i * 5 * MIN + S, f"KeyError: 'customer_id' in {tool}", tool=tool,
                                     session=f"{tool}-{session}", user=user))
    add_spans(store, spans)
    miner = Miner(CONFIG)
    mine(store, pid, start, start + 30 * MIN, miner)
    ids = {r["subject"]: r["id"] for r in templates(store, pid)}
    # Before the fifth occurrence (at 20 minutes) there are four: nothing.
    assert check(store, pid, start + 20 * MIN) == []
    (c,) = check(store, pid, start + 21 * MIN)
    assert (c.kind, c.rule, c.severity, c.dimension, c.evaluator) == (
        "new_cluster", "novel", "ticket", "tool_error:enough", "")
    assert c.discriminator == str(ids["enough"]) and c.labels["service"] == SVC
    assert c.figures["n"] == 5 and c.figures["sessions"] == 3 and c.figures["users"] == 2
    assert c.figures["baseline"] == 0 and c.figures["template"] == "KeyError: 'customer_id' in enough"
    assert c.session_ids == ["enough-a", "enough-b", "enough-c"] and len(c.trace_ids) == 5
    # A service not warm is not checked; once the first hit leaves the hour, four are too few again.
    assert check(store, pid, start + 21 * MIN, warm=set()) == []
    assert [x.figures["n"] for x in check(store, pid, start + 60 * MIN)] == [5]
    assert check(store, pid, start + 61 * MIN) == []


def test_templates_mined_during_the_warm_up_are_the_baseline_and_never_novel(db: tuple[Store, int]) -> None:
    store, pid = db
    add_spans(store, [failed_span(pid, T0 + S, "connection reset by peer")])
    miner = Miner(CONFIG)
    mine(store, pid, T0, T0 + MIN, miner, warm=set())
    (row,) = templates(store, pid)
    assert row["baseline"] is True
    # Hours later, warm now, the same failure in force: not novel (and too young a template to surge).
    start = T0 + 2 * HOUR
    add_spans(store, [failed_span(pid, start + i * MIN, "connection reset by peer", session=f"s{i}", user=f"u{i % 2}")
                      for i in range(10)])
    mine(store, pid, start, start + 10 * MIN, miner)
    assert len(templates(store, pid)) == 1
    assert check(store, pid, start + 10 * MIN) == []
    # A template mined once warm is novel for a day from its first occurrence, then no longer.
    first = start + 20 * MIN
    add_spans(store, [failed_span(pid, first + i * MIN, "quota of 5 exceeded", session=f"q{i}", user=f"u{i % 2}")
                      for i in range(6)])
    add_spans(store, [failed_span(pid, first + DAY - 10 * MIN + i * MIN, "quota of 7 exceeded", session=f"r{i}",
                                  user=f"u{i % 2}") for i in range(6)])
    mine(store, pid, first, first + 10 * MIN, miner)
    mine(store, pid, first + DAY - 10 * MIN, first + DAY, miner)
    assert len(templates(store, pid)) == 2
    assert [c.rule for c in check(store, pid, first + 10 * MIN)] == ["novel"]
    assert [c.rule for c in check(store, pid, first + DAY)] == ["novel"]
    assert check(store, pid, first + DAY + MIN) == []


# -- surge ------------------------------------------------------------------------------------------------------------


def known_template(conn: Any, pid: int, template: str, *, first_seen_ns: int, last_seen_ns: int | None = None) -> int:
    """A crm_lookup tool-error template mined during the warm-up (a baseline one); answers its id."""
    return int(conn.execute(insert(m.failure_templates).values(
        project_id=pid, source="tool_error", subject="crm_lookup", template=template, first_seen_ns=first_seen_ns,
        last_seen_ns=first_seen_ns if last_seen_ns is None else last_seen_ns, count=0, weighted_count=0.0,
        baseline=True, created_at=utcnow(),
    ).returning(m.failure_templates.c.id)).scalar_one())


def test_a_surge_is_relative_to_traffic_not_to_time(db: tuple[Store, int]) -> None:
    store, pid = db
    week = 7 * DAY
    with store.engine.begin() as conn:
        template_id = known_template(conn, pid, "Timeout after <NUM>s", first_seen_ns=T0)
        rows = []
        # A week at 100 sessions and one hit an hour (1 in 100 sessions) ...
        for hour in range(7 * 24):
            rollups.add(conn, pid, T0 + hour * HOUR, {"service": SVC}, rollups.SESSION_DIMENSION, "",
                        {"count": 100, "weighted_count": 100})
            rows.append((T0 + hour * HOUR + 10 * MIN, f"b{hour}"))
        # ... then a peak hour, 1000 sessions with 10 hits (the same 1 in 100), then an hour of 100 sessions with
        # the same 10 hits (1 in 10).
        for hour, sessions in ((0, 1000), (1, 100)):
            rollups.add(conn, pid, T0 + week + hour * HOUR, {"service": SVC}, rollups.SESSION_DIMENSION, "",
                        {"count": sessions, "weighted_count": sessions})
            rows += [(T0 + week + hour * HOUR + i * 5 * MIN, f"w{hour}-{i}") for i in range(10)]
        conn.execute(insert(m.template_hits), [
            {"project_id": pid, "template_id": template_id, "event_ns": t, "session_id": sid,
             "trace_id": None, "user_id": f"u{i % 3}", "service": SVC, "weight": 1.0, "message": "Timeout after 5s"}
            for i, (t, sid) in enumerate(rows)])
    # The peak: 10 expected at 1000 sessions (a week at time rate would expect 1 and call it a surge).
    assert check(store, pid, T0 + week + HOUR) == []
    (c,) = check(store, pid, T0 + week + 2 * HOUR)
    assert (c.kind, c.rule, c.severity, c.discriminator) == ("new_cluster", "surge", "ticket", str(template_id))
    # The baseline is the 7 days before the window: 167 of the first week's hits and the peak's 10, over
    # 16,700 + 1,000 sessions.
    assert c.figures["baseline"] == 177 and c.figures["n"] == 10
    assert c.figures["expected"] == pytest.approx(177.5 * 100 / 17700, abs=1e-4)
    assert c.figures["p_value"] < CONFIG.surge_p
    assert c.session_ids[0] == "w1-0" and "1.00 expected at this traffic" in c.summary


def test_a_known_template_needs_a_warm_up_of_history_before_it_can_surge(db: tuple[Store, int]) -> None:
    store, pid = db
    start = T0 + 3 * DAY
    with store.engine.begin() as conn:
        # Known (mined during the warm-up, so never novel), but first seen only 7 hours before the window.
        template_id = known_template(conn, pid, "boom", first_seen_ns=start - 7 * HOUR, last_seen_ns=start)
        for hour in range(-30, 1):
            rollups.add(conn, pid, start + hour * HOUR, {"service": SVC}, rollups.SESSION_DIMENSION, "",
                        {"count": 100, "weighted_count": 100})
        conn.execute(insert(m.template_hits), [
            {"project_id": pid, "template_id": template_id, "event_ns": start + i * MIN, "session_id": f"s{i}",
             "trace_id": None, "user_id": f"u{i % 2}", "service": SVC, "weight": 1.0, "message": "boom"}
            for i in range(30)])
    # 30 hits against a baseline of none at all: improbable, but there is no day of history to judge by.
    assert check(store, pid, start + HOUR) == []
    # The same with a warm-up of 6 hours: a surge, judged on the 7 hours it has existed (0 hits in 700 sessions).
    (c,) = check(store, pid, start + HOUR, config=ClusterConfig(warmup_s=6 * 3600))
    assert c.rule == "surge" and c.figures["expected"] == pytest.approx(0.5 * 100 / 700, abs=1e-4)


def test_a_template_is_checked_per_service_against_that_services_traffic(db: tuple[Store, int]) -> None:
    store, pid = db
    week = 7 * DAY
    with store.engine.begin() as conn:
        template_id = known_template(conn, pid, "Timeout after <NUM>s", first_seen_ns=T0)
        rows = []
        # A week of both services at 100 sessions and one hit an hour ...
        for hour in range(7 * 24):
            for service in (SVC, "other"):
                rollups.add(conn, pid, T0 + hour * HOUR, {"service": service}, rollups.SESSION_DIMENSION, "",
                            {"count": 100, "weighted_count": 100})
                rows.append((T0 + hour * HOUR + 10 * MIN, f"{service}-b{hour}", service))
        # ... then an hour in which SVC has its usual 100 sessions and 10 hits (a surge), while "other" has a peak
        # of 10,000 sessions and 6 hits (fewer than its usual 1 in 100).
        for service, sessions, count in ((SVC, 100, 10), ("other", 10_000, 6)):
            rollups.add(conn, pid, T0 + week, {"service": service}, rollups.SESSION_DIMENSION, "",
                        {"count": sessions, "weighted_count": sessions})
            rows += [(T0 + week + i * 5 * MIN, f"{service}-w{i}", service) for i in range(count)]
        conn.execute(insert(m.template_hits), [
            {"project_id": pid, "template_id": template_id, "event_ns": t, "session_id": sid,
             "trace_id": None, "user_id": f"u{i % 3}", "service": service, "weight": 1.0,
             "message": "Timeout after 5s"}
            for i, (t, sid, service) in enumerate(rows)])
    # Pooled over services, 16 hits against (334.5 / 33,400) x 10,100 = 101 expected would be no surge; per
    # service, SVC's 10 hits against its own 1.00 expected are one, other's 6 against 100 are not.
    (c,) = check(store, pid, T0 + week + HOUR, warm={SVC, "other"})
    assert (c.rule, c.labels["service"], c.discriminator) == ("surge", SVC, str(template_id))
    assert c.figures["n"] == 10 and c.figures["baseline"] == 168
    assert c.figures["expected"] == pytest.approx(168.5 * 100 / 16_800, abs=1e-4)
    assert c.session_ids[0] == f"{SVC}-w0" and all(sid.startswith(SVC) for sid in c.session_ids)
    # "other" alone (SVC not warm): its 6 hits at its peak traffic are no surge.
    assert check(store, pid, T0 + week + HOUR, warm={"other"}) == []
