"""The offline faithfulness evaluator: claim extraction, normalization, real captures, tau-bench."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.faithfulness import (
    Claim,
    EmbeddingFaithfulness,
    Faithfulness,
    FaithfulnessParams,
    claims,
    cosine,
    sentences,
    unsupported,
)
from agentwatch.evaluate.session import SessionView
from agentwatch.ingest.decode import traces_from_message
from agentwatch.normalize import normalize
from agentwatch.sessions.summary import SPAN_COLUMNS, summarize
from agentwatch.testing import make_span, traces_request

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TAU_BENCH = DATA / "tau-bench" / "gpt-4o-airline-dev.json"
CAPTURE = DATA / "otlp-captures" / "otel-genai" / "0001-traces.pb"
T0 = 1_767_225_600_000_000_000


def view_of(spans: list[Span], session_id: str = "sess-1") -> SessionView:
    """Spans -> OTLP request -> decoder -> normalizer -> SessionView, as the server reads them."""
    return view_from_request(traces_request(spans), session_id)


def view_from_request(request: Any, session_id: str) -> SessionView:
    decoded = traces_from_message(request)
    assert not decoded.errors, decoded.errors
    normalized = [normalize(raw) for raw in decoded.spans]
    summary = summarize([{c: getattr(s, c) for c in SPAN_COLUMNS} for s in normalized])
    assert summary is not None
    return SessionView.from_spans({**summary.as_row(), "session_id": session_id}, normalized)


def run(evaluator: Any, view: SessionView) -> EvalResult:
    result: EvalResult = asyncio.run(evaluator.evaluate(view))
    return result


def text_msg(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def one_turn(user: str, answer: str, results: Sequence[Any] = (), documents: Sequence[str] = (),
             system: str | None = None) -> SessionView:
    """A root, tool spans with ``results``, a retrieval span with ``documents``, an llm span answering."""
    spans = [make_span("a1", "1", name="invoke_agent bot", duration_ms=1000,
                       attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "sess-1"})]
    for i, result in enumerate(results):
        spans.append(make_span("a1", f"{i + 10:x}", parent="1", name="execute_tool lookup", start_ns=T0 + (i + 1) * 10**6,
                               attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
                                           "gen_ai.tool.call.result": result if isinstance(result, str) else json.dumps(result)}))
    if documents:
        spans.append(make_span("a1", "30", parent="1", name="retrieval kb", start_ns=T0 + 50 * 10**6,
                               attributes={"gen_ai.operation.name": "retrieval",
                                           "gen_ai.retrieval.documents": json.dumps([{"id": str(i), "content": d} for i, d in enumerate(documents)])}))
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.input.messages": json.dumps([text_msg("user", user)]),
             "gen_ai.output.messages": json.dumps([text_msg("assistant", answer)])}
    if system is not None:
        attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])
    spans.append(make_span("a1", "40", parent="1", name="chat gpt-4o-mini", start_ns=T0 + 100 * 10**6, attributes=attrs))
    return view_of(spans)


def kv(found: list[Claim]) -> list[tuple[str, str]]:
    return [(c.kind, c.value) for c in found]


# --------------------------------------------------------------------------- extraction and normalization


@pytest.mark.parametrize(("text", "expected"), [
    ("$42.50", [("money", "42.5")]),
    ("42.50 USD", [("money", "42.5")]),
    ("USD 42.5", [("money", "42.5")]),
    ("€10 and £7", [("money", "10"), ("money", "7")]),
    ("a total of $1,234.00", [("money", "1234")]),
    ("$1.2 million", [("money", "1200000")]),
    ("30 dollars", [("money", "30")]),
    ("a 15% discount, 2.5 percent fee", [("percent", "15"), ("percent", "2.5")]),
    ("2026-03-14", [("date", "2026-03-14")]),
    ("03/14/2026", [("date", "2026-03-14")]),
    ("14/03/2026", [("date", "2026-03-14")]),  # a first number above 12 is the day
    ("14.03.2026", [("date", "2026-03-14")]),
    ("March 14, 2026", [("date", "2026-03-14")]),
    ("14 March 2026", [("date", "2026-03-14")]),
    ("on Mar. 14th", [("date", "--03-14")]),
    ("the 3rd of May", [("date", "--05-03")]),
    ("created 2024-05-08T11:37:17", [("date", "2024-05-08"), ("time", "11:37")]),
    ("2:30 PM, 14:30, 6pm, 12:00 AM", [("time", "14:30"), ("time", "14:30"), ("time", "18:00"), ("time", "00:00")]),
    ("order A-1001, booking ABC123, flight HAT069", [("id", "A1001"), ("id", "ABC123"), ("id", "HAT069")]),
    ("card credit_card_4421486", [("id", "CREDITCARD4421486")]),
    ("1,234 items, 3.5 stars, 24 hours", [("number", "1234"), ("number", "3.5"), ("number", "24")]),
])
def test_claims_are_found_and_normalized(text: str, expected: list[tuple[str, str]]) -> None:
    assert kv(claims(text)) == expected


@pytest.mark.parametrize("text", [
    "It should appear within 5 business days.",  # single digits are not checkable by default
    "Refunds take 3-5 business days.",
    "You may 2 times try again.",  # lower-case "may" is a verb, not a month
    "Flight EST to SEA, 1st and 20th row, version v1.2.3",
    "Two passengers, one bag.",
    "",
])
def test_text_without_checkable_claims(text: str) -> None:
    assert claims(text) == []


def test_min_digits_one_makes_single_digits_checkable() -> None:
    assert kv(claims("within 5 business days", min_digits=1)) == [("number", "5")]


def test_day_first_reads_ambiguous_numeric_dates_as_day_month() -> None:
    assert kv(claims("03/04/2026")) == [("date", "2026-03-04")]
    assert kv(claims("03/04/2026", day_first=True)) == [("date", "2026-04-03")]


def test_invalid_dates_are_not_dates() -> None:
    for text in ("2026-02-30", "13/13/2026", "February 30"):
        assert all(kind != "date" for kind, _ in kv(claims(text))), text


def test_terms_match_case_and_separators_and_longest_first() -> None:
    found = claims("Upgraded from Basic Economy to economy and the premium-plan", terms=["economy", "basic economy",
                                                                                       "Premium plan"])
    assert kv(found) == [("term", "basic economy"), ("term", "economy"), ("term", "premium plan")]


def test_names_only_when_asked() -> None:
    assert claims("Dear Mia Li, welcome") == []
    assert kv(claims("Dear Mia Li, welcome", names=True)) == [("name", "mia li")]


def test_claims_keep_text_and_position() -> None:
    text = "Refunded $42.50 for A-1001"
    found = claims(text)
    assert [(c.text, text[c.start:c.start + len(c.text)]) for c in found] == [("$42.50", "$42.50"), ("A-1001", "A-1001")]
    assert str(found[0]) == "$42.50"


# --------------------------------------------------------------------------- support


@pytest.mark.parametrize(("answer", "result"), [
    ("Your refund is $42.50.", {"amount": 42.5}),
    ("Your refund is $42.50.", {"amount": "42.50"}),
    ("Your refund is 42.5 USD.", '{"amount": "$42.50"}'),
    ("A refund of $6,594 was issued.", {"payment_history": [{"amount": -6594}]}),  # sign ignored
    ("The total is $10,519.", "10519.0"),
    ("Fares are $100 and $200.", '{"fares":[100,200]}'),  # compact JSON: two numbers, not 100200
    ("Your flight on May 21 is confirmed.", {"date": "2024-05-21"}),
    ("Your flight on 05/21/2024 is confirmed.", {"date": "2024-05-21"}),
    ("Your flight on 21 May 2024 is confirmed.", {"date": "2024-05-21T08:00:00"}),
    ("Booking jg7fmm is confirmed.", {"reservation_id": "JG7FMM"}),  # ids case-insensitive
    ("Booking A1001 is confirmed.", {"order_id": "A-1001"}),
    ("It departs at 6:00 AM.", {"scheduled_departure_time_est": "06:00:00"}),
    ("Pay with certificate_7473723.", {"payment_methods": {"certificate_7473723": {}}}),
    ("A 15% discount applies.", {"discount": 0.15}),
    ("You are on the Premium plan.", {"plan": "premium_plan"}),
])
def test_normalized_forms_support_each_other(answer: str, result: Any) -> None:
    view = one_turn("hi", answer, results=[result])
    assert unsupported(view.turns[0], view, {"terms": ["premium plan"], "supported_by": ["turn"]}) == []


@pytest.mark.parametrize(("answer", "result", "flagged"), [
    ("Your refund is $42.50.", {"amount": 425}, ["$42.50"]),
    ("Your refund is $20.", {"date": "2024-05-20"}, ["$20"]),  # a date's day is not an amount
    ("Your flight HAT069 costs $69.", {"flight_number": "HAT069"}, ["$69"]),  # nor a flight number's digits
    ("Your flight on May 22 is confirmed.", {"date": "2024-05-21"}, ["May 22"]),
    ("Your flight on 2025-05-21 is confirmed.", {"date": "2024-05-21"}, ["2025-05-21"]),
    ("Booking A-1002 is confirmed.", {"order_id": "A-1001"}, ["A-1002"]),
])
def test_values_that_differ_are_flagged(answer: str, result: Any, flagged: list[str]) -> None:
    view = one_turn("hi", answer, results=[result])
    assert [c.text for c in unsupported(view.turns[0], view)] == flagged


def test_retrieved_documents_are_evidence() -> None:
    view = one_turn("what does premium cost?", "The Premium plan costs $29 per month since 2025-01-01.",
                    documents=["Premium plan: $29/month, effective 2025-01-01."])
    result = run(Faithfulness({"terms": ["premium plan"]}), view)
    assert (result.score, result.reason) == (1.0, "3/3 claims supported")


def test_what_the_user_said_supports_by_default_only() -> None:
    view = one_turn("I can pay up to $600.", "Upgrading costs $600.", results=[{"status": "ok"}])
    assert unsupported(view.turns[0], view) == []
    assert [c.text for c in unsupported(view.turns[0], view, {"supported_by": ["turn"]})] == ["$600"]


def test_system_instructions_support_by_default_and_can_be_left_out() -> None:
    view = one_turn("insurance?", "Travel insurance is $30 per passenger.", system="Insurance costs $30 per passenger.")
    assert [c.text for c in unsupported(view.turns[0], view, {"supported_by": ["turn", "user"]})] == ["$30"]
    assert unsupported(view.turns[0], view) == []
    (claim,) = Faithfulness().claims(view)
    assert claim.support == "the system prompt"


def test_score_reason_and_turn_indices() -> None:
    view = one_turn("refund?", "Refunded $42.50 for A-1001 on 2026-03-14; total $241 and $465.",
                    results=[{"amount": 42.5, "order_id": "A-1001", "date": "2026-03-14"}])
    result = run(Faithfulness(), view)
    assert result.score == pytest.approx(3 / 5)
    assert result.reason == "3/5 claims supported; unsupported, in no evidence: turn 0: $241 (money), turn 0: $465 (money)"


def test_unsupported_list_is_capped() -> None:
    answer = " ".join(f"${n}" for n in range(10, 25))
    result = run(Faithfulness({"max_listed": 3}), one_turn("hi", answer, results=[{"x": 1}]))
    assert result.score == 0.0
    assert result.reason.endswith("turn 0: $12 (money), and 12 more")


def test_no_checkable_claims_scores_one() -> None:
    result = run(Faithfulness(), one_turn("hello", "Hello! How can I help you today?"))
    assert (result.status, result.score, result.reason) == ("ok", 1.0, "no checkable claims")


def test_no_answer_text_is_an_evaluation_failure() -> None:
    spans = [make_span("a1", "1", name="invoke_agent bot", attributes={"gen_ai.operation.name": "invoke_agent"}),
             make_span("a1", "2", parent="1", name="chat gpt-4o", attributes={"gen_ai.operation.name": "chat"})]
    result = run(Faithfulness(), view_of(spans))
    assert result.is_error and result.score is None
    assert result.error == "no agent answer text in the session; is message content capture on?"


@pytest.mark.parametrize(("params", "message"), [
    ({"kinds": ["money", "colour"]},
     "evaluator 'faithfulness': parameter 'kinds' has unknown kind 'colour' (known: date, time, money, percent, id, number, term, name)"),
    ({"supported_by": ["turn", "web"]},
     "evaluator 'faithfulness': parameter 'supported_by' has unknown source 'web' (known: turn, user, earlier_turns, arguments, system)"),
    ({"terms": "premium"}, "evaluator 'faithfulness': parameter 'terms' must be a list of non-empty strings, got 'premium'"),
    ({"answers": "last"}, "evaluator 'faithfulness': parameter 'answers' must be one of 'all', 'final', got 'last'"),
    ({"min_digits": 0}, "evaluator 'faithfulness': parameter 'min_digits' must be an integer >= 1, got 0"),
    ({"treshold": 0.5}, "evaluator 'faithfulness': unknown parameter 'treshold' (known: answers, arithmetic, day_first, kinds, max_listed, max_terms, min_digits, outcome_patterns, outcome_tools, supported_by, terms)"),
])
def test_bad_params_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Faithfulness(params)
    assert str(info.value) == message


# --------------------------------------------------------------------------- the otel-genai capture


def test_otel_genai_capture() -> None:
    """Turn 0: "Your refund of $42.50 for order A-1001 has been issued. It should appear on your
    statement within 5 business days." against refund_api's result
    {"status":"refunded","order_id":"A-1001","amount":42.5,"refund_id":"rf_0001"}.
    Turn 1: "Refunds usually take 3-5 business days to post; ..." with no tool call.

    Decision: $42.50 and A-1001 are supported by the result (42.5 == 42.50, ids match); "5 business
    days" is a single-digit number and not a checkable claim by default, so the score is 1.0. With
    min_digits=1 the "5" of turn 0 and the "3" and "5" of turn 1 become claims that nothing supports:
    the delay is the agent's own promise, not something a tool returned.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(CAPTURE.read_bytes())
    view = view_from_request(request, "sess-conformance-0001")
    assert len(view.turns) == 2
    assert "$42.50" in view.turns[0].answer and "5 business days" in view.turns[0].answer
    checker = Faithfulness()
    assert kv(claims(view.turns[0].answer)) == [("money", "42.5"), ("id", "A1001")]
    assert checker.unsupported(view.turns[0], view) == []
    assert claims(view.turns[1].answer) == []
    result = run(checker, view)
    assert (result.score, result.reason) == (1.0, "2/2 claims supported")

    strict = Faithfulness({"min_digits": 1, "supported_by": ["turn"]})
    assert [c.text for c in strict.unsupported(view.turns[0], view)] == ["5"]
    assert [c.text for c in strict.unsupported(view.turns[1], view)] == ["3", "5"]
    result = run(strict, view)
    assert result.score == pytest.approx(2 / 5)
    assert result.reason == "2/5 claims supported; unsupported, in no evidence: turn 0: 5 (number), turn 1: 3 (number), turn 1: 5 (number)"


# --------------------------------------------------------------------------- tau-bench


def tau_view(record: dict[str, Any], session_id: str) -> SessionView:
    """A tau-bench trajectory as the spans an instrumented agent would send.

    One trace; per user message an ``invoke_agent`` root (one turn); per assistant message an llm
    span whose input messages are the conversation so far (system prompt included) and whose
    output is that message; per tool message an ``execute_tool`` span with the call's arguments
    and the tool's answer as result. A trailing user message with no answer makes a root alone.
    """
    traj = record["traj"]
    assert traj[0]["role"] == "system"
    history: list[dict[str, Any]] = [traj[0]]
    spans: list[Span] = []
    turn_children: list[Span] = []
    calls: dict[str, dict[str, Any]] = {}
    counter = iter(range(1, 10_000))
    t = T0
    root_id = ""
    root_start = t

    def close_turn() -> None:
        if not root_id:
            return
        end = max([s.end_time_unix_nano for s in turn_children] + [root_start + 10**6])
        spans.append(make_span("7a0", root_id, name="invoke_agent airline", start_ns=root_start,
                               duration_ms=max(1, (end - root_start) // 10**6 + 1),
                               attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "airline",
                                           "gen_ai.conversation.id": session_id, "agentwatch.intent": "airline"}))
        spans.extend(turn_children)
        turn_children.clear()

    for message in traj[1:]:
        t += 10 * 10**6
        role = message["role"]
        if role == "user":
            close_turn()
            root_id, root_start = f"{next(counter):x}", t
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                calls[call["id"]] = call["function"]
            output = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}
            turn_children.append(make_span("7a0", f"{next(counter):x}", parent=root_id, name="chat gpt-4o", start_ns=t,
                                           attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                                       "gen_ai.input.messages": json.dumps(history),
                                                       "gen_ai.output.messages": json.dumps([output])}))
        elif role == "tool":
            function = calls[message["tool_call_id"]]
            turn_children.append(make_span("7a0", f"{next(counter):x}", parent=root_id, name=f"execute_tool {message['name']}",
                                           start_ns=t, attributes={
                                               "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": message["name"],
                                               "gen_ai.tool.call.id": message["tool_call_id"],
                                               "gen_ai.tool.call.arguments": function["arguments"],
                                               "gen_ai.tool.call.result": message["content"] or ""}))
        history.append(message)
    close_turn()
    return view_of(spans, session_id)


@pytest.fixture(scope="module")
def tau() -> list[dict[str, Any]]:
    if not TAU_BENCH.exists():
        pytest.fail(f"the tau-bench sessions are expected at {TAU_BENCH}")
    data: list[dict[str, Any]] = json.loads(TAU_BENCH.read_text())
    return data


# Hand-checked: every amount ($) and date in the assistant messages of these sessions, compared with
# the tool results of the same turn (turn k = the k-th user message, 0-based, and everything the agent
# did until the next one). The entries are the amounts and dates that NO tool result of their turn
# contains. Each carries what else would back it: "user" = the user said it earlier in the
# conversation (or in this turn); "earlier" = a tool result of an earlier turn holds it; an empty set =
# nothing the agent saw holds it (a computed total, or an invented figure). Sessions with an empty
# dict were checked and every amount and date in them is in a same-turn tool result.
TAU_EXPECTED: dict[int, dict[int, list[tuple[str, set[str]]]]] = {
    # Downgrade of two business reservations. Turn 1 lists dates 2024-05-21/28/30: all in the
    # get_reservation_details results of turn 1. Turn 2 reports after the two updates: the refunds
    # $6,594 and $3,925 are the payment_history entries -6594 and -3925 (sign ignored), but
    # "$241" (= 140 + 101), "$465" (= 107 + 141 + 108 + 109) are sums no result states, "$3,538"
    # (= 1859 + 1679, turn 1 prices) and "$2,210" (half of 4420) appear nowhere. Turn 3's $10,519 is
    # the calculate result 10519.0.
    2: {2: [("$241", set()), ("$3,538", set()), ("$465", set()), ("$2,210", set())]},
    # Turn 2 proposes the upgrade listing flights "on 2024-05-25" with no tool call in that turn (the
    # date came from turn 1's get_reservation_details). Turn 3's 2024-05-25 and $209 are in the
    # update_reservation_flights result (payment 209).
    4: {2: [("2024-05-25", {"earlier"})]},
    # Turn 3: $105, $102, $207 (calculate) and May 24, 2024 are in the turn's results, but "Your
    # original payment was $2787" comes from turn 2's reservation details.
    6: {3: [("$2787", {"earlier"})]},
    # Turn 3: $1200 and $600 are calculate results. Turn 4 repeats "$600" with no tool call; turn 5
    # claims "The payment of $600 has been processed" while update_reservation_flights shows a
    # payment of 1200: the user's "$600" budget (turn 3) and turn 3's calculate 600.0 both mask this
    # false claim when user or earlier-turn support is on.
    14: {4: [("$600", {"user", "earlier"})], 5: [("$600", {"user", "earlier"})]},
    # Turn 3 searches direct flights (the date is only in the search's arguments, the results carry no
    # date) and answers "on 2024-05-19": held by turn 2's reservation details. $155 and $146 are in the
    # search results. Turns 4, 5 and 6 repeat "$146" with no tool call. Turn 7's 2024-05-19 is in the
    # update result.
    20: {3: [("2024-05-19", {"earlier"})], 4: [("$146", {"earlier"})], 5: [("$146", {"earlier"})],
         6: [("$146", {"earlier"})]},
    # Turn 4 (two assistant messages around a search and a calculate): "May 21, 2024" is not in the
    # search result (no date field) but the user said "May 21" in turn 0 and turn 3's result has it;
    # "$136" is the economy price (in the result) and "$114" the calculate result -114.0; "$94" and
    # "$80" are turn 3's prices, "$174" (= 94 + 80) is nowhere, "$100" is the user's budget, said in
    # this very turn. Turn 5's May 21, 2024 and $114 are in the update result.
    22: {4: [("May 21, 2024", {"user", "earlier"}), ("$174", set()), ("$94", {"earlier"}), ("$80", {"earlier"}),
             ("$100", {"user"})]},
    # Turn 3: 2024-05-24, $105 and $190 are in the one-stop search results; "$295" (= 105 + 190) is not.
    31: {3: [("$295", set())]},
    # Turn 1: "it was created on 2024-05-01": the created_at "2024-05-01T04:50:18" of the result.
    35: {},
    # Turn 2 lists two options from the one-stop search: $105, $190, $112, $104 and May 24, 2024 are
    # in the results; the option totals "$295" and "$216" (= 112 + 104) are not.
    56: {2: [("$295", set()), ("$216", set())]},
    # Turn 3: $747 is the calculate result; "Since you mentioned you can pay up to $600" quotes the
    # user's message of the same turn. Turn 5's $100 is the baggage payment in the update result.
    64: {3: [("$600", {"user"})]},
    # Turn 1 lists 2024-05-17, 2024-05-19, 2024-05-20 and the birth date 1967-03-12: all in the result.
    69: {},
    # Turn 1's dates are in the result; turn 3's $1,200 and turn 4's $600 are calculate results.
    89: {},
}


#: Hand-counted amounts and dates (distinct per turn) in the assistant messages of each session, so the
#: test also shows the evaluator finds them all, not only that it flags the right ones.
TAU_CLAIMS = {2: 10, 4: 3, 6: 7, 14: 8, 20: 11, 22: 10, 31: 7, 35: 1, 56: 9, 64: 7, 69: 4, 89: 6}


def flagged(view: SessionView, params: dict[str, Any]) -> dict[int, list[str]]:
    checker = Faithfulness(params)
    out = {}
    for turn in view.turns:
        found = [c.text for c in checker.unsupported(turn, view)]
        if found:
            out[turn.index] = found
    return out


def expected_for(session: int, allowed: set[str]) -> dict[int, list[str]]:
    """The hand-checked claims that none of the ``allowed`` extra sources backs."""
    out = {}
    for turn, items in TAU_EXPECTED[session].items():
        left = [text for text, backers in items if not backers & allowed]
        if left:
            out[turn] = left
    return out


@pytest.mark.parametrize("session", sorted(TAU_EXPECTED))
def test_tau_bench_flags_every_amount_and_date_missing_from_same_turn_results(tau: list[dict[str, Any]], session: int) -> None:
    """Only tool results of the same turn count as support."""
    view = tau_view(tau[session], f"tau-{session}")
    checker = Faithfulness({"kinds": ["money", "date"], "supported_by": ["turn"], "arithmetic": False})
    result = run(checker, view)
    missing = sum(len(items) for items in TAU_EXPECTED[session].values())
    assert result.reason.startswith(f"{TAU_CLAIMS[session] - missing}/{TAU_CLAIMS[session]} claims supported")
    assert flagged(view, {"kinds": ["money", "date"], "supported_by": ["turn"], "arithmetic": False}) == expected_for(session, set())


@pytest.mark.parametrize("session", sorted(TAU_EXPECTED))
def test_tau_bench_default_also_accepts_what_the_user_said(tau: list[dict[str, Any]], session: int) -> None:
    view = tau_view(tau[session], f"tau-{session}")
    assert flagged(view, {"kinds": ["money", "date"], "supported_by": ["turn", "user"], "arithmetic": False}) \
        == expected_for(session, {"user"})


@pytest.mark.parametrize("session", sorted(TAU_EXPECTED))
def test_tau_bench_with_earlier_turns_only_computed_figures_remain(tau: list[dict[str, Any]], session: int) -> None:
    view = tau_view(tau[session], f"tau-{session}")
    params = {"kinds": ["money", "date"], "supported_by": ["turn", "user", "earlier_turns"], "arithmetic": False}
    assert flagged(view, params) == expected_for(session, {"user", "earlier"})


def test_tau_bench_scores(tau: list[dict[str, Any]]) -> None:
    result = run(Faithfulness({"kinds": ["money", "date"], "supported_by": ["turn"], "arithmetic": False}), tau_view(tau[2], "tau-2"))
    assert result.reason.startswith("6/10 claims supported; unsupported, in no evidence: turn 2: $241 (money), turn 2: $3,538 (money)")
    assert result.score == pytest.approx(0.6)
    result = run(Faithfulness({"kinds": ["money", "date"], "supported_by": ["turn", "user"]}), tau_view(tau[89], "tau-89"))
    assert (result.score, result.reason) == (1.0, "6/6 claims supported")


# --------------------------------------------------------------------------- embeddings


class FakeEmbedder:
    """Bag-of-words vectors over a fixed vocabulary: similar wording, similar vectors."""

    VOCAB = ("refund", "issued", "order", "shipped", "weather", "sunny", "amount", "status", "refunded", "cat")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(text.lower().count(word)) for word in self.VOCAB] for text in texts]


def test_embedding_variant_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    with pytest.raises(ImportError) as info:
        EmbeddingFaithfulness({"model": "/models/all-MiniLM-L6-v2"})
    assert str(info.value) == ("EmbeddingFaithfulness needs the sentence-transformers package: "
                               "pip install 'agentwatch[embeddings]'")


def test_embedding_variant_needs_a_model_or_an_embedder() -> None:
    with pytest.raises(ValueError) as info:
        EmbeddingFaithfulness({})
    assert str(info.value) == ("evaluator 'faithfulness_embedding': parameter 'model' is required "
                               "(a local model path or cached name)")
    with pytest.raises(ValueError) as info:
        EmbeddingFaithfulness({"threshold": 2}, embedder=FakeEmbedder())
    assert str(info.value) == "evaluator 'faithfulness_embedding': parameter 'threshold' must be a number in [-1, 1], got 2"


def test_cosine() -> None:
    assert cosine([1, 0], [1, 0]) == 1.0
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine([0, 0], [1, 1]) == 0.0
    with pytest.raises(ValueError):
        cosine([1], [1, 2])


def test_sentences_split_on_ends_and_lines() -> None:
    assert sentences("Your refund was issued. It takes days!\n- Order shipped today\nOK.") == [
        "Your refund was issued.", "It takes days!", "Order shipped today"]


def test_embedding_similarity_logic_with_a_fake_embedder() -> None:
    fake = FakeEmbedder()
    evaluator = EmbeddingFaithfulness({"threshold": 0.5}, embedder=fake)
    scores = evaluator.similarities(["The refund was issued for your order.", "The weather is sunny today."],
                                    ["status: refunded refund issued", "order: A-1001"])
    assert scores[0] > 0.5 > scores[1] == 0.0
    view = one_turn("refund?", "The refund was issued for your order. The weather is sunny today.",
                    results=[{"status": "refund issued", "order": "A-1001"}])
    result = run(evaluator, view)
    assert result.score == 0.5
    assert result.reason.startswith("1/2 sentences supported (cosine >= 0.5); unsupported: turn 0: 'The weather is sunny today.'")
    assert fake.calls[-1][:2] == ["The refund was issued for your order.", "The weather is sunny today."]


def test_embedding_turns_without_evidence_are_not_scored() -> None:
    result = run(EmbeddingFaithfulness({}, embedder=FakeEmbedder()), one_turn("hello", "Hello there, how can I help?"))
    assert (result.score, result.reason) == (1.0, "no answer sentence in a turn with evidence")


def test_embedding_errors_are_evaluation_failures() -> None:
    def broken(texts: Sequence[str]) -> list[list[float]]:
        return [[1.0]]

    view = one_turn("refund?", "The refund was issued for your order.", results=[{"status": "refund issued"}])
    result = run(EmbeddingFaithfulness({}, embedder=broken), view)
    assert result.is_error
    assert result.error == ("evaluator 'faithfulness_embedding' failed: ValueError: the embedder returned 1 vectors "
                            "for 2 texts")


def test_params_dataclass_defaults() -> None:
    params = FaithfulnessParams.parse(None)
    assert params.supported_by == ("turn", "user", "earlier_turns", "arguments", "system") and params.answers == "all" and params.min_digits == 2


# --------------------------------------------------------------------------- reading like a person


def conversation(*turns: tuple[str, Sequence[tuple[str, Any, Any]], str], system: str | None = None) -> SessionView:
    """One trace per ``(user, [(tool, arguments, result)], answer)``; each model call sees the conversation so far."""
    spans: list[Span] = []
    history: list[dict[str, Any]] = []
    for t, (user, calls, answer) in enumerate(turns):
        trace, start = f"c{t}", T0 + t * 60 * 10**9
        history.append(text_msg("user", user))
        spans.append(make_span(trace, "1", name="invoke_agent bot", start_ns=start, duration_ms=1000,
                               attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "sess-1"}))
        for i, (name, args, result) in enumerate(calls):
            spans.append(make_span(trace, f"{i + 10:x}", parent="1", name=f"execute_tool {name}",
                                   start_ns=start + (i + 1) * 10**6, attributes={
                                       "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                       "gen_ai.tool.call.arguments": json.dumps(args),
                                       "gen_ai.tool.call.result": result if isinstance(result, str) else json.dumps(result)}))
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                 "gen_ai.input.messages": json.dumps(history),
                 "gen_ai.output.messages": json.dumps([text_msg("assistant", answer)])}
        if system is not None:
            attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])
        spans.append(make_span(trace, "40", parent="1", name="chat gpt-4o-mini", start_ns=start + 100 * 10**6,
                               attributes=attrs))
        history.append(text_msg("assistant", answer))
    return view_of(spans)


def support(view: SessionView, params: dict[str, Any] | None = None) -> dict[str, str]:
    return {c.text: c.support or "" for c in Faithfulness(params).claims(view)}


WALLET = {"voucher_5521": {"balance": 500}, "card_8817630": {"brand": "visa"}}


def test_a_difference_of_figures_on_the_table_is_supported_and_says_how() -> None:
    view = conversation(
        ("What is on my account?", [("get_wallet", {"user": "kim"}, WALLET)], "Your voucher holds $500."),
        ("Book the trip with it.", [("quote", {"trip": "T1"}, {"total": 329})],
         "The trip is $329; $171 will be left on the voucher."))
    assert support(view) == {"$500": "get_wallet result, turn 0", "$329": "quote result, turn 1",
                             "$171": "= $500 - $329"}
    result = run(Faithfulness(), view)
    assert result.score == 1.0
    assert result.reason == ("3/3 claims supported (2 by the turn's evidence, 1 by arithmetic); supported beyond the "
                             "turn: turn 1: $171 (= $500 - $329)")


def test_sums_of_three_and_per_count_products() -> None:
    legs = [{"leg": "A", "price": 120}, {"leg": "B", "price": 45}, {"leg": "C", "price": 30}]
    view = conversation(("Price the three legs for my group of three.", [("price_legs", {}, legs)],
                         "Legs: $120, $45 and $30, $195 per person, so $585 for the three of you."))
    found = support(view)
    assert found["$195"] == "= $120 + $45 + $30"
    assert found["$585"] == "= 3 x $195"


def test_arithmetic_uses_only_figures_said_not_every_number_of_the_evidence() -> None:
    # 100 + 71 = 171, but neither figure was put in front of the user: a reader cannot check $171.
    view = conversation(("Balance?", [("get_wallet", {}, {"a": 100, "b": 71, "c": 12})], "You have $171 left."))
    assert support(view) == {"$171": ""}
    assert run(Faithfulness(), view).reason == "0/1 claims supported; unsupported, in no evidence: turn 0: $171 (money)"
    told = conversation(("Balance?", [("get_wallet", {}, {"a": 100, "b": 71})], "$100 plus $71: you have $171 left."))
    assert support(told)["$171"] == "= $100 + $71"
    assert support(told, {"arithmetic": False})["$171"] == ""


def test_four_terms_only_when_asked() -> None:
    view = conversation(("Total?", [("items", {}, [10, 20, 40, 80])], "Items of $10, $20, $40 and $80: $150 in all."))
    assert support(view)["$150"] == "", "no three of them add up to 150"
    assert support(view, {"max_terms": 4})["$150"] == "= $10 + $20 + $40 + $80"


def test_evidence_of_earlier_turns_the_system_prompt_and_tool_arguments() -> None:
    view = conversation(
        ("My booking?", [("get_booking", {"id": "BK77"}, {"flight_date": "2025-07-04", "fare": 230})],
         "Booking BK77 flies on 2025-07-04."),
        ("Move it a day later.", [("search", {"date": "2025-07-05"}, [{"flight": "ZZ12", "fare": 250}])],
         "On July 5th flight ZZ12 costs $250, $20 more than your $230 fare; changes cost $75 under our policy."),
        system="Changing a flight costs $75.")
    found = support(view)
    assert found["July 5th"] == "search arguments, turn 1", "what was searched for"
    assert found["$230"] == "get_booking result, turn 0"
    assert found["$75"] == "the system prompt"
    assert found["$20"] == "= $250 - $230"
    strict = support(view, {"supported_by": ["turn"], "arithmetic": False})
    assert [text for text, how in strict.items() if not how] == ["BK77", "July 5th", "$20", "$230", "$75"]


def test_arguments_of_a_call_that_failed_are_no_evidence() -> None:
    view = conversation(("Search the 9th.", [("search", {"date": "2025-07-09"}, "Error: no flights on that day")],
                         "There is nothing on 2025-07-09."))
    assert support(view) == {"2025-07-09": ""}


def test_the_tail_of_a_card_or_account_number() -> None:
    view = conversation(("Which card?", [("get_wallet", {}, WALLET)],
                         "I will charge the Visa ending in 7630, not the one ending in 4411."))
    found = support(view)
    assert found["7630"] == "get_wallet result, turn 0"
    assert found["4411"] == ""


def test_max_terms_is_checked() -> None:
    with pytest.raises(ValueError) as info:
        Faithfulness({"max_terms": 5})
    assert str(info.value) == "evaluator 'faithfulness': parameter 'max_terms' must be an integer from 2 to 4, got 5"


def test_an_amount_reported_as_what_an_action_did_is_checked_against_its_result() -> None:
    quote = {"options": [{"fare": 600}, {"fare": 1200}]}
    charged = {"booking": "NB1", "payments": [{"card": "card_8817630", "amount": 1200}],
               "legs": [{"fare": 700}, {"fare": 500}]}
    view = conversation(
        ("Upgrade me, my budget is $600.", [("quote", {}, quote)], "One seat is $600, both are $1200. Shall I?"),
        ("Yes, both.", [("upgrade_booking", {"seats": 2}, charged)],
         "Done: the payment of $600 has been processed. The new legs are $700 and $500."))
    params = {"outcome_tools": ["upgrade_*"]}
    found = {(c.turn, c.text): c for c in Faithfulness(params).claims(view)}
    # $600 is everywhere (the user's budget, the quote), but the upgrade charged 1200.
    assert found[(1, "$600")].support == "" and found[(1, "$600")].outcome
    assert found[(1, "$700")].support == "upgrade_booking result, turn 1", "not an outcome sentence"
    result = run(Faithfulness(params), view)
    assert "unsupported, in no evidence: turn 1: $600 (money, not what the action returned)" in result.reason
    assert support(view)["$600"] == "the user", "without outcome_tools any evidence backs it"
    right = conversation(("Upgrade both.", [("upgrade_booking", {"seats": 2}, charged)],
                          "Done: $1200 was charged to your card, $700 + $500 for the two legs."))
    assert support(right, params)["$1200"] == "upgrade_booking result, turn 0"
    total = conversation(("Upgrade both.", [("upgrade_booking", {"seats": 2}, {"legs": [{"fare": 700}, {"fare": 500}]})],
                          "Done: you were charged $1200 in all."))
    assert support(total, params)["$1200"] == "= 700 (upgrade_booking result, turn 0) + 500 (upgrade_booking result, turn 0)"
    failed = conversation(("Upgrade both.", [("upgrade_booking", {"seats": 2}, "Error: card declined")],
                           "Sorry, the $1200 could not be charged."))
    assert support(failed, params)["$1200"] == "", "no action worked: the usual sources, and none holds it"
