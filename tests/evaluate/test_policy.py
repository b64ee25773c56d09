"""The policy rules: an action's ids and amounts were on the record, and an action is not repeated."""

from __future__ import annotations

from typing import Any

import pytest
from test_rules import agent, chat, msg, raises, run, span_id, tool, view_of

from agentwatch.evaluate.policy import CallLimit, GroundedArguments
from agentwatch.evaluate.rules import make_rule
from agentwatch.evaluate.session import SessionView

PROFILE = {"user_id": "ana_7", "payment_methods": {"gift_card_11": {"amount": 80}, "credit_card_22": {}},
           "reservations": ["QX12AB"]}
FLIGHTS = [{"flight_number": "ZZ100", "date": "2025-06-02", "prices": {"economy": 120}},
           {"flight_number": "ZZ300", "date": "2025-06-02", "prices": {"economy": 95}}]
GROUNDED = {"tools": ["book_*"], "fields": ["user_id", "flights.*.flight_number", "flights.*.date",
                                            "payment_methods.*.payment_id", "payment_methods.*.amount"]}


def booking(args: dict[str, Any], *, said: str = "I can book ZZ100 for $120. Shall I?", user: str = "Yes.",
            result: Any = None) -> SessionView:
    """The user asks, the agent looks up the profile and flights, proposes ``said``, books with ``args``."""
    seen = [msg("user", "Book me a flight on June 2nd, I'm ana_7."), msg("assistant", said), msg("user", user)]
    return view_of([
        agent(),
        tool("2", "get_user", at_ms=100, args={"user_id": "ana_7"}, result=PROFILE),
        tool("3", "search_flights", at_ms=200, args={"date": "2025-06-02"}, result=FLIGHTS),
        chat("4", seen, [msg("assistant", "Booking now.")], at_ms=300),
        tool("5", "book_reservation", at_ms=400, args=args,
             result=result if result is not None else {"reservation_id": "NEW1"}),
    ])


def test_grounded_booking_passes() -> None:
    args = {"user_id": "ana_7", "flights": [{"flight_number": "ZZ100", "date": "2025-06-02"}],
            "payment_methods": [{"payment_id": "gift_card_11", "amount": 80},
                                {"payment_id": "credit_card_22", "amount": 40}]}
    result = run(GroundedArguments(GROUNDED), booking(args, said="ZZ100 is $120: $80 on your gift card, $40 on "
                                                                   "the card. Shall I book it?"))
    assert (result.score, result.reason) == (1.0, "1 call(s) use only ids and amounts on the record")


def test_an_id_no_result_holds_and_an_amount_no_one_stated_break_it() -> None:
    args = {"user_id": "ana_7", "flights": [{"flight_number": "ZZ900", "date": "2025-06-02"}],
            "payment_methods": [{"payment_id": "gift_card_99", "amount": 120}, {"payment_id": "credit_card_22",
                                                                               "amount": 37}]}
    result = run(GroundedArguments(GROUNDED), booking(args))
    assert result.score == 0.0
    assert result.reason == "; ".join(
        f"book_reservation.{where} is in no earlier tool result, user message or answer (span {span_id('5')})"
        for where in ('flights.0.flight_number = "ZZ900"', 'payment_methods.0.payment_id = "gift_card_99"',
                      "payment_methods.1.amount = 37"))


def test_sources_and_dates_in_other_forms() -> None:
    # "June 2nd" from the user backs a date no result holds when only the user counts.
    args = {"user_id": "ana_7", "flights": [{"flight_number": "ZZ100", "date": "2025-06-02"}],
            "payment_methods": [{"payment_id": "credit_card_22", "amount": 120}]}
    assert run(GroundedArguments({**GROUNDED, "sources": ["user"]}), booking(args)).reason.count("ZZ100") == 1
    only_user = run(GroundedArguments({**GROUNDED, "fields": ["flights.*.date"], "sources": ["user"]}),
                    booking(args))
    assert only_user.score == 1.0
    # The amount was said by the agent only: without the answers it is on no record.
    without = run(GroundedArguments({**GROUNDED, "sources": ["results", "user"]}), booking(args, said="Shall I?"))
    assert without.score == 1.0, "120 is the economy price in the search result"
    args["payment_methods"][0]["amount"] = 125
    assert run(GroundedArguments(GROUNDED), booking(args, said="It is $125 with fees. Shall I?")).score == 1.0
    assert run(GroundedArguments({**GROUNDED, "sources": ["results", "user"]}),
               booking(args, said="It is $125 with fees. Shall I?")).score == 0.0


def test_a_call_the_tool_refused_is_not_judged_unless_asked() -> None:
    args = {"user_id": "ana_7", "payment_methods": [{"payment_id": "gift_card_99", "amount": 120}]}
    refused = booking(args, result="Error: payment method not found")
    assert run(GroundedArguments(GROUNDED), refused).reason == "none of the tools was called successfully"
    assert run(GroundedArguments({**GROUNDED, "successful_only": False}), refused).score == 0.0


@pytest.mark.parametrize(("params", "message"), [
    ({"fields": ["user_id"]}, "rule 'grounded_arguments': parameter 'tools' is required"),
    ({"tools": ["book_*"]}, "rule 'grounded_arguments': parameter 'fields' is required"),
    ({**GROUNDED, "sources": ["web"]},
     "rule 'grounded_arguments': parameter 'sources' must be a list of results, user, answers, got ['web']"),
    ({"tools": ["x"], "fields": ["a..b"]},
     "rule 'grounded_arguments': parameter 'fields' must be a dotted path like 'order.total', got 'a..b'"),
    ({"tools": ["x"], "per": "turn"}, "rule 'call_limit': parameter 'per' must be one of 'user_message', 'session', "
                                      "got 'turn'"),
])
def test_policy_params_are_checked(params: dict[str, Any], message: str) -> None:
    cls = CallLimit if "per" in params else GroundedArguments
    assert raises(cls, params) == message


def actions(*turns: list[tuple[str, dict[str, Any], Any]]) -> SessionView:
    """One trace (one user message) per turn, each with its tool calls ``(name, args, result)``."""
    spans = []
    for t, calls in enumerate(turns):
        trace = f"b{t}"
        start = t * 60_000
        spans.append(agent(trace=trace, start=agent().start_time_unix_nano + start * 1_000_000))
        spans.append(chat("2", [msg("user", f"request {t}")], [msg("assistant", "done")], at_ms=start + 10,
                          trace=trace))
        for i, (name, args, result) in enumerate(calls):
            spans.append(tool(f"{i + 3:x}", name, at_ms=start + 100 * (i + 1), args=args, result=result, trace=trace))
    return view_of(spans)


LIMIT = {"tools": ["cancel_*", "book_*"], "key": ["reservation_id"]}


def test_call_limit_counts_calls_that_worked_per_key_and_user_message() -> None:
    three = actions([("cancel_reservation", {"reservation_id": r}, {"status": "cancelled"}) for r in "ABC"])
    assert run(CallLimit(LIMIT), three).reason == "3 consequential call(s) within the limit"
    retried = actions([("cancel_reservation", {"reservation_id": "A"}, "Error: timed out"),
                       ("cancel_reservation", {"reservation_id": "A"}, {"status": "cancelled"})])
    assert run(CallLimit(LIMIT), retried).score == 1.0, "a failed call did not act"
    twice = actions([("cancel_reservation", {"reservation_id": "A"}, {"status": "cancelled"}),
                     ("cancel_reservation", {"reservation_id": "A"}, {"status": "cancelled"})])
    result = run(CallLimit(LIMIT), twice)
    assert result.score == 0.0
    assert result.reason == (f'cancel_reservation with reservation_id ["A"] worked 2 times for user message 0 '
                             f"(limit 1; spans {span_id('3')}, {span_id('4')})")


def test_call_limit_per_session() -> None:
    two_bookings = actions([("book_reservation", {"flights": ["ZZ100"]}, {"reservation_id": "N1"})],
                           [("book_reservation", {"flights": ["ZZ100"]}, {"reservation_id": "N2"})])
    assert run(CallLimit(LIMIT), two_bookings).score == 1.0, "one booking per user message"
    per_session = run(make_rule("call_limit", {**LIMIT, "per": "session"}), two_bookings)
    assert per_session.score == 0.0 and "worked 2 times in the session" in per_session.reason
    assert run(CallLimit({**LIMIT, "per": "session", "max_calls": 2}), two_bookings).score == 1.0
