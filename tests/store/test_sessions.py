"""Sessions from spans: grouping, inheritance, out-of-order arrival, summaries and event time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from agentwatch.ingest.decode import traces_from_message
from agentwatch.ingest.receiver import span_row
from agentwatch.normalize import DEFAULT_OPTIONS
from agentwatch.sessions.lifecycle import SessionLifecycle
from agentwatch.store import models as m
from agentwatch.store.store import SessionFilter, Store
from agentwatch.store.writer import WriteBatch, Writer
from agentwatch.testing import make_span, traces_request

T0 = 1_767_225_600_000_000_000
SEC = 1_000_000_000
MIN = 60 * SEC


class Harness:
    def __init__(self, store: Store, sessions: SessionLifecycle, writer: Writer, project_id: int) -> None:
        self.store = store
        self.lifecycle = sessions
        self.writer = writer
        self.project_id = project_id

    def send(self, *spans, **request_kw) -> None:  # type: ignore[no-untyped-def]
        decoded = traces_from_message(traces_request(list(spans), **request_kw))
        assert decoded.rejected_spans == 0, decoded.errors
        rows = [span_row(raw, DEFAULT_OPTIONS) for raw in decoded.spans]
        resources = list({raw.resource.key: raw.resource for raw in decoded.spans}.values())
        self.writer.submit(WriteBatch(self.project_id, spans=rows, resources=resources)).result(timeout=30)

    def sessions(self, **flt) -> list[dict]:  # type: ignore[no-untyped-def]
        rows, _ = self.store.list_sessions(self.project_id, SessionFilter(**flt), limit=1000)
        return rows

    def session(self, session_id: str) -> dict:
        return self.store.get_session(self.project_id, session_id)

    def tick(self) -> None:
        self.writer.call(self.lifecycle.tick).result(timeout=30)

    def span_sessions(self) -> dict[str, str]:
        with self.store.engine.connect() as conn:
            return {r.span_id: r.session_id for r in conn.execute(select(m.spans.c.span_id, m.spans.c.session_id))}


@pytest.fixture
def h(db_url: str) -> Iterator[Harness]:
    store = Store(db_url)
    store.migrate()
    project_id = store.ensure_project("default")
    sessions = SessionLifecycle(store.engine, idle_timeout_s=300, allowed_lateness_s=60)
    writer = Writer(store.engine, sessions)
    writer.start()
    try:
        yield Harness(store, sessions, writer, project_id)
    finally:
        writer.stop()
        store.close()


def chat(trace: str, span: str, parent: str | None, start: int, tokens: tuple[int, int] = (100, 10), **attrs):  # type: ignore[no-untyped-def]
    return make_span(trace, span, parent=parent, name="chat gpt-4o-mini", start_ns=start, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1], **attrs})


def tool(trace: str, span: str, parent: str | None, start: int, error: bool = False):  # type: ignore[no-untyped-def]
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "refund_api"}
    if error:
        attrs["error.type"] = "timeout"
    return make_span(trace, span, parent=parent, name="execute_tool refund_api", start_ns=start, attributes=attrs,
                     error="timed out" if error else None)


def agent(trace: str, span: str, start: int, duration_ms: int = 5000, **attrs):  # type: ignore[no-untyped-def]
    return make_span(trace, span, name="invoke_agent support", start_ns=start, duration_ms=duration_ms, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
        # The agent span repeats its children's usage: it must not count twice.
        "gen_ai.usage.input_tokens": 999, "gen_ai.usage.output_tokens": 999, **attrs})


def test_summary_counts_llm_usage_only_and_tool_errors(h: Harness) -> None:
    h.send(
        chat("a1", "11", "10", T0 + SEC, (100, 10)),
        tool("a1", "12", "10", T0 + 2 * SEC, error=True),
        chat("a1", "13", "10", T0 + 3 * SEC, (200, 20)),
        agent("a1", "10", T0, **{"gen_ai.conversation.id": "conv-1", "user.id": "u-1", "agentwatch.intent": "refund",
                                 "gen_ai.agent.version": "2.0"}),
        service="svc", resource={"service.version": "1.0"},
    )
    [s] = h.sessions()
    assert s["session_id"] == "conv-1"
    assert (s["spans"], s["llm_calls"], s["tool_calls"], s["tool_errors"]) == (4, 2, 1, 1)
    assert (s["tokens_in"], s["tokens_out"]) == (300, 30)
    assert s["errors"] == 1
    assert (s["service"], s["agent_name"], s["agent_version"], s["intent"], s["user_id"]) == (
        "svc", "support", "2.0", "refund", "u-1")
    assert s["start_ns"] == T0 and s["end_ns"] == T0 + 5 * SEC
    assert s["cost_usd"] > 0
    assert s["complete"] is False


def test_agent_version_falls_back_to_service_version(h: Harness) -> None:
    h.send(agent("a2", "20", T0, **{"gen_ai.conversation.id": "conv-2"}), resource={"service.version": "1.7.3"})
    assert h.session("conv-2")["agent_version"] == "1.7.3"


def test_session_id_is_inherited_from_an_ancestor_that_arrives_later(h: Harness) -> None:
    # Children first, in two requests, the root (the only span naming the session) last.
    h.send(chat("b1", "21", "20", T0 + SEC))
    h.send(tool("b1", "22", "21", T0 + 2 * SEC))
    assert [s["session_id"] for s in h.sessions()] == ["0" * 30 + "b1"], "trace id stands in until a session is named"
    h.send(agent("b1", "20", T0, **{"gen_ai.conversation.id": "conv-b"}))
    [s] = h.sessions()
    assert s["session_id"] == "conv-b"
    assert (s["spans"], s["llm_calls"], s["tool_calls"]) == (3, 1, 1)
    assert set(h.span_sessions().values()) == {"conv-b"}


def test_trace_session_reaches_spans_without_one(h: Harness) -> None:
    # OpenLLMetry style: the id is on the chat span, not on the agent span above it.
    h.send(agent("c1", "30", T0), chat("c1", "31", "30", T0 + SEC, **{"gen_ai.conversation.id": "conv-c"}),
           tool("c1", "32", "30", T0 + 2 * SEC))
    assert set(h.span_sessions().values()) == {"conv-c"}
    # A later span of the same trace, in another request, joins the same session.
    h.send(chat("c1", "33", "30", T0 + 3 * SEC))
    assert h.session("conv-c")["spans"] == 4
    assert h.session("conv-c")["llm_calls"] == 2


def test_one_session_from_many_traces_in_any_order(h: Harness) -> None:
    for turn, trace in enumerate(["d3", "d1", "d2"]):
        start = T0 + {"d1": 0, "d2": 10, "d3": 20}[trace] * SEC
        h.send(chat(trace, f"{turn}1", f"{turn}f", start + SEC),
               agent(trace, f"{turn}f", start, **{"session.id": "conv-d"}))
    s = h.session("conv-d")
    assert s["turns"] == 3
    assert s["llm_calls"] == 3
    assert s["start_ns"] == T0
    assert sorted(s["trace_ids"]) == sorted("0" * 30 + t for t in ("d1", "d2", "d3"))


def test_a_resent_span_replaces_and_is_not_counted_twice(h: Harness) -> None:
    h.send(agent("e1", "40", T0, **{"gen_ai.conversation.id": "conv-e"}), chat("e1", "41", "40", T0 + SEC, (100, 10)))
    h.send(chat("e1", "41", "40", T0 + SEC, (150, 15)))
    s = h.session("conv-e")
    assert s["spans"] == 2
    assert (s["tokens_in"], s["tokens_out"]) == (150, 15)


def test_session_completes_after_idle_timeout_in_event_time(h: Harness) -> None:
    h.send(agent("f1", "50", T0, duration_ms=1000, **{"gen_ai.conversation.id": "old"}))
    # Later traffic ending at 5m31s: the watermark (4m31s, 1m of lateness behind) is not yet 5m past 1s.
    h.send(agent("f2", "51", T0 + 5 * MIN + 30 * SEC, duration_ms=1000, **{"gen_ai.conversation.id": "mid"}))
    h.tick()
    assert h.session("old")["complete"] is False
    h.send(agent("f3", "52", T0 + 7 * MIN, duration_ms=1000, **{"gen_ai.conversation.id": "new"}))
    h.tick()
    assert h.session("old")["complete"] is True
    assert h.session("mid")["complete"] is False
    assert h.session("new")["complete"] is False
    assert {s["session_id"] for s in h.sessions(complete=False)} == {"mid", "new"}


def test_late_span_updates_a_complete_session_which_stays_complete(h: Harness) -> None:
    h.send(agent("a7", "60", T0, **{"gen_ai.conversation.id": "conv-g"}), chat("a7", "61", "60", T0 + SEC))
    h.writer.call(h.lifecycle.flush).result()
    assert h.session("conv-g")["complete"] is True
    h.send(tool("a7", "62", "60", T0 + 2 * SEC, error=True))
    s = h.session("conv-g")
    assert s["complete"] is True
    assert (s["spans"], s["tool_calls"], s["tool_errors"]) == (3, 1, 1)


def test_flush_completes_every_open_session_and_keeps_the_clock_after_restart(h: Harness, db_url: str) -> None:
    h.send(agent("b8", "70", T0, **{"gen_ai.conversation.id": "conv-h1"}))
    h.send(agent("b9", "71", T0 + 10 * SEC, **{"gen_ai.conversation.id": "conv-h2"}))
    result = h.writer.call(h.lifecycle.flush).result()
    assert result["completed_sessions"] == 2
    assert h.sessions(complete=False) == []
    clock = h.lifecycle.clocks[h.project_id]
    assert clock.watermark_ns > T0 + 10 * SEC + 5 * SEC + 300 * SEC
    again = SessionLifecycle(h.store.engine, idle_timeout_s=300, allowed_lateness_s=60)
    assert again.clocks[h.project_id].watermark_ns == clock.watermark_ns
    assert again.clocks[h.project_id].max_event_ns == clock.max_event_ns


def test_many_requests_share_transactions_and_lose_nothing(h: Harness) -> None:
    import concurrent.futures

    def send(i: int) -> None:
        trace = f"{i + 1:x}"
        h.send(agent(trace, "80", T0 + i * SEC, **{"gen_ai.conversation.id": f"conv-{i}"}),
               chat(trace, "81", "80", T0 + i * SEC + 1))

    commits_before = h.writer.commits
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(200)))
    assert len(h.sessions()) == 200
    with h.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.spans)).scalar() == 400
    assert h.writer.commits - commits_before < 200, "concurrent requests should share commits"


def test_projects_do_not_see_each_other(h: Harness) -> None:
    other = h.store.ensure_project("other")
    h.send(agent("c5", "90", T0, **{"gen_ai.conversation.id": "shared-id"}))
    decoded = traces_from_message(traces_request([agent("c6", "91", T0, **{"gen_ai.conversation.id": "shared-id"})]))
    rows = [span_row(raw, DEFAULT_OPTIONS) for raw in decoded.spans]
    h.writer.submit(WriteBatch(other, spans=rows, resources=[decoded.spans[0].resource])).result()
    assert h.store.get_session(h.project_id, "shared-id")["trace_ids"] == ["0" * 30 + "c5"]
    assert h.store.get_session(other, "shared-id")["trace_ids"] == ["0" * 30 + "c6"]


def test_the_completed_watermark_trails_the_live_one_until_a_completion_pass_commits(h: Harness) -> None:
    """The monitor checks up to ``completed_ns``: a session the live watermark has passed may not be
    complete (and queued for evaluation) until the next completion pass, which passes are spaced out."""
    h.send(agent("c1", "80", T0, duration_ms=1000, **{"gen_ai.conversation.id": "early"}))
    h.tick()
    clock = h.lifecycle.clocks[h.project_id]
    assert clock.completed_ns == clock.watermark_ns  # a pass committed
    h.lifecycle._last_completion = time.monotonic() + 3600  # noqa: SLF001 - the next write falls between two passes
    h.send(agent("c2", "81", T0 + 10 * MIN, duration_ms=1000, **{"gen_ai.conversation.id": "later"}))
    idle = 300 * SEC
    early_end = T0 + SEC
    assert clock.watermark_ns - idle > early_end  # the live watermark says "early" is due...
    assert h.session("early")["complete"] is False  # ...but no pass has completed it
    assert clock.completed_ns - idle < early_end
    h.tick()
    assert h.session("early")["complete"] is True
    assert clock.completed_ns == clock.watermark_ns and clock.completed_ns - idle > early_end
    again = SessionLifecycle(h.store.engine, idle_timeout_s=300, allowed_lateness_s=60)
    assert again.clocks[h.project_id].completed_ns == clock.watermark_ns


def test_ingest_processes_sharing_a_database_keep_one_clock_and_complete_each_session_once(h: Harness) -> None:
    """A second writer on the same database (another ingest process): spans of one session reach both,
    the furthest clock wins in both, and every session completes (and is queued) once."""
    completed: list[str] = []

    def hook(conn, project_id, session_ids):  # type: ignore[no-untyped-def]
        completed.extend(session_ids)

    h.lifecycle.on_complete = hook
    other_sessions = SessionLifecycle(h.store.engine, idle_timeout_s=300, allowed_lateness_s=60, on_complete=hook)
    other = Harness(h.store, other_sessions, Writer(h.store.engine, other_sessions), h.project_id)
    other.writer.start()
    try:
        # One session, its two turns through different processes; a later one only through the second.
        h.send(agent("d1", "70", T0, duration_ms=1000, **{"gen_ai.conversation.id": "split"}))
        other.send(agent("d2", "71", T0 + 30 * SEC, duration_ms=1000, **{"gen_ai.conversation.id": "split"}))
        other.send(agent("d3", "72", T0 + 10 * MIN, duration_ms=1000, **{"gen_ai.conversation.id": "late"}))
        assert h.session("split")["spans"] == 2 and h.session("split")["trace_ids"] == ["0" * 30 + "d1",
                                                                                            "0" * 30 + "d2"]
        other.tick()
        h.tick()  # the first process saw nothing past T0 + 1s: it adopts the furthest clock
        mine, theirs = h.lifecycle.clocks[h.project_id], other_sessions.clocks[h.project_id]
        assert mine.max_event_ns == theirs.max_event_ns == T0 + 10 * MIN + SEC
        assert mine.watermark_ns == theirs.watermark_ns == T0 + 9 * MIN + SEC
        assert h.session("split")["complete"] is True and h.session("late")["complete"] is False
        h.tick()
        other.tick()
        assert completed == ["split"]
        with h.store.engine.connect() as conn:
            stored = conn.execute(select(m.watermarks.c.watermark_ns)
                                  .where(m.watermarks.c.project_id == h.project_id)).scalar_one()
        assert stored == T0 + 9 * MIN + SEC
        # A process whose own clock is behind never moves the stored one back.
        assert SessionLifecycle(h.store.engine, idle_timeout_s=300, allowed_lateness_s=60
                                ).clocks[h.project_id].watermark_ns == stored
    finally:
        other.writer.stop()
