"""Python evaluators for the simulated shop of :class:`~agentwatch.traffic.Generator` ("Acme").

They read the transcript only (tool calls, their results, the agent's answers): never the
generator's truth nor anything a real instrumentation would not send, so they judge recorded
sessions of a real agent of the same shape just as well. In ``agentwatch.yaml``::

    evaluators:
      - name: goal_completion
        kind: python
        function: agentwatch.traffic.checks:goal_completion
        threshold: 1.0
        sample_rate: 1.0

``goal_completion`` decides whether the customer's request was carried out:

- an intent with an action tool (``refund`` -> ``refund_api``, ``plan_change`` -> ``change_plan``,
  ``cancel_subscription`` -> ``cancel_subscription``, ``order_status`` -> ``lookup_order`` or
  ``track_shipment``, ``billing`` -> ``get_invoice``) fails when no call of that tool succeeded
  (status not ERROR and a result that is not error-shaped, see
  :class:`~agentwatch.evaluate.rules.ToolError`), in particular when the agent confirmed an action
  whose result was an error (``{"error": "token expired"}``: a masked failure);
- any session fails when the agent apologised that a system could not be reached or contacted in
  the answers of its last turn with a tool call or after it (the answers of every turn when there
  was none);
- a refusal under policy is not a failure: a refund the agent declined, explaining the 30-day
  window, passes;
- ``policy_question`` (no tool needed) passes when the agent answered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentwatch.evaluate.rules import DEFAULT_ERROR_PATTERNS, ToolError
from agentwatch.evaluate.session import SessionView, ToolCall, Turn

__all__ = ["GOAL_TOOLS", "goal_completion"]

#: Per intent, the tools one of which must succeed for the request to be carried out (none: an answer is enough).
GOAL_TOOLS: dict[str, tuple[str, ...]] = {
    "refund": ("refund_api",),
    "plan_change": ("change_plan",),
    "cancel_subscription": ("cancel_subscription",),
    "order_status": ("lookup_order", "track_shipment"),
    "billing": ("get_invoice",),
    "policy_question": (),
}

#: Error-shaped results: the rule's defaults plus words an action's result uses when it did not happen.
_ERRORS = ToolError({"patterns": [*DEFAULT_ERROR_PATTERNS,
                                  r"\b(?:failed|failure|expired|declined|rejected|denied|unavailable)\b"]})

#: The agent apologising that a system could not be reached (not "couldn't get the latest scan").
_UNREACHABLE = re.compile(
    r"\b(?:couldn'?t|could not|can'?t|cannot|unable to|failed to|not able to) "
    r"(?:reach|contact|connect to|get through to)\b"
    r"|\bwhile (?:contacting|reaching|connecting to)\b"
    r"|\bsomething went wrong\b"
    r"|\b(?:system|service|server)s? (?:is|are|was|were) (?:down|unavailable|not responding)\b",
    re.IGNORECASE)

#: A refusal that explains a policy window: "... outside our 30-day refund window, so I can't refund it."
_WINDOW = re.compile(
    r"\b(?:\d+|thirty)[- ]day\b[^.]*\b(?:window|period|policy)\b|\boutside\b[^.]*\b(?:window|period|policy)\b",
    re.IGNORECASE)
_REFUSAL = re.compile(r"\b(?:can'?t|cannot|can not|unable to|not able to|won'?t be able to|not eligible)\b",
                      re.IGNORECASE)


def _quote(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _intent(session: SessionView) -> str | None:
    if session.intent:
        return session.intent
    return next((span.intent for span in session.spans if span.intent), None)


def _turn_of(session: SessionView, call: ToolCall) -> Turn | None:
    return next((turn for turn in session.turns if any(c.span_id == call.span_id for c in turn.tool_calls)), None)


def _apology(turns: Sequence[Turn]) -> tuple[int, str] | None:
    """The first answer of ``turns`` apologising that a system could not be reached."""
    for turn in turns:
        if turn.answer and _UNREACHABLE.search(turn.answer):
            return turn.index, turn.answer
    return None


def goal_completion(session: SessionView) -> tuple[float, str]:
    """1.0 when the customer's request was carried out (or refused under policy), 0.0 when it was not."""
    intent = _intent(session)
    if intent not in GOAL_TOOLS:
        known = ", ".join(sorted(GOAL_TOOLS))
        raise ValueError(f"goal_completion: no goal known for intent {intent!r} (known: {known})")
    answered = [turn for turn in session.turns if turn.answer]
    if not answered:
        return 0.0, "the agent never answered"

    with_tools = [turn for turn in session.turns if turn.tool_calls]
    after = session.turns[with_tools[-1].index:] if with_tools else session.turns
    apology = _apology(after)
    if apology is not None:
        index, text = apology
        return 0.0, f"the agent apologised that a system could not be reached (turn {index}): {_quote(text)}"

    tools = GOAL_TOOLS[intent]
    if not tools:
        return 1.0, f"answered: {_quote(answered[0].answer)}"

    calls = [call for call in session.tool_calls if call.name in tools]
    for call in calls:
        if _ERRORS.problem(call) is None:
            return 1.0, f"{call.name} succeeded (span {call.span_id})"

    refusal = next((turn for turn in answered if _WINDOW.search(turn.answer) and _REFUSAL.search(turn.answer)), None)
    if refusal is not None:
        return 1.0, f"refused under policy (turn {refusal.index}): {_quote(refusal.answer)}"

    wanted = " or ".join(tools)
    if not calls:
        return 0.0, f"{wanted} was never called"
    shaped = [call for call in calls if call.success]
    if shaped:  # status OK, error in the result: did the agent take it for success?
        call = shaped[-1]
        problem = _ERRORS.problem(call)
        turn = _turn_of(session, call)
        answer = turn.answer if turn is not None else ""
        return 0.0, (f"{call.name} returned an error ({problem}) (span {call.span_id}), yet the agent answered "
                     f"{_quote(answer)}")
    call = calls[-1]
    return 0.0, f"{wanted} never succeeded: {len(calls)} failed call(s), the last: {_ERRORS.problem(call)} " \
                f"(span {call.span_id})"
