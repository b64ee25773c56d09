"""The ``confirmation`` rule: a consequential tool called only after the user confirmed the agent's proposal.

``confirmation``
    Each call of a consequential tool (``tools``) was consented to by the user.
    The exact rule: find the model call (llm span) that emitted the tool call:
    the latest llm span started before the tool whose output has a tool_call
    part with the call's id and tool name (ids are not always unique), else
    the latest one of the turn asking for that tool by name. In the
    conversation it saw (its input messages), the last user message must match
    none of ``negative_patterns`` (default :data:`DEFAULT_NEGATIVE_PATTERNS`:
    starts with no / don't / wait, "not sure", "hold off", "don't proceed")
    and either

    - one of ``patterns`` (case-insensitive; default
      :data:`DEFAULT_CONFIRM_PATTERNS`: a yes wherever it stands, okay or sure
      opening a clause, go ahead, please proceed, I confirm, confirming,
      sounds good, a yes in other languages), with the closest earlier
      non-system message an assistant message with text (the proposal the
      user answered; a "yes" that opens the conversation confirms nothing); or
    - one of ``instruction_patterns`` (default
      :data:`DEFAULT_INSTRUCTION_PATTERNS`: an imperative naming an action,
      "Please downgrade all of them", not a question), when the agent's
      previous message matches none of ``proposal_patterns`` (default
      :data:`DEFAULT_PROPOSAL_PATTERNS`: please confirm, would you like ...?,
      shall I ...?): an instruction where nothing was proposed is consent.

    A yes covers the call as proposed: when a consequential call made after it
    failed (error-shaped result) and this call has other arguments, the rule
    is broken (the user has not seen the new proposal). With
    ``one_call_per_confirmation: true``, a confirmation covers one
    consequential call: another consequential call between the user's message
    and this one breaks the rule. A call whose model call or input messages
    cannot be found is a failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch._types import NormalizedSpan
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, _Unevaluable, listing, matches_any, parse_json, shorten
from agentwatch.evaluate.rules.tool_error import ToolError
from agentwatch.evaluate.session import SessionView, ToolCall
from agentwatch.normalize.messages import message_text

__all__ = [
    "DEFAULT_CONFIRM_PATTERNS",
    "DEFAULT_INSTRUCTION_PATTERNS",
    "DEFAULT_NEGATIVE_PATTERNS",
    "DEFAULT_PROPOSAL_PATTERNS",
    "Confirmation",
    "ConfirmationParams",
]

#: A user message that confirms a proposed action: a yes wherever it stands, "please proceed", "go ahead",
#: "I confirm", "confirming to proceed", a yes in another language.
DEFAULT_CONFIRM_PATTERNS: tuple[str, ...] = (
    r"\b(?:yes|yeah|yep|yup|yess+)\b",
    r"(?:^|[.!?;,]\s*)\W*(?:sure|ok|okay|correct|confirm(?:ed)?|affirmative|absolutely|definitely|certainly|"
    r"of course|alright|all right)\b",
    r"\bgo ahead\b",
    r"\bplease (?:do|proceed|continue|confirm it|book it|make the change)\b",
    r"\bproceed\b",
    r"\b(?:i|we) (?:do |hereby )?confirm\b",
    r"\bconfirm(?:ed|ing)\b",
    r"\bdo it\b",
    r"\bthat(?:'s| is| all| works| sounds)(?: (?:all|fine|good))? (?:right|correct|fine|good|great|perfect)\b",
    r"\b(?:sounds|looks) (?:good|great|perfect|fine|right)\b",
    r"\blet'?s do (?:it|that|this)\b",
    # Other languages: si / sí, oui, ja, sim, tak, da (Slavic), hai and more, as a word.
    r"(?:^|[\s.!?,;:¡¿\"'(])(?:s[ií]|oui|ja|sim|tak|да|はい|是的?|好的?|네|예|evet|ναι)(?=$|[\s.!?,;:\"')、。！，])",
    r"\b(?:d'accord|claro|vale|adelante|proceda|procede|allez-y|vas-y|genau|einverstanden|certo|va bene|procedi|"
    r"prosseguir|pode seguir|natürlich|bien sûr|por supuesto|confirmo|confirme|bestätige)\b",
)

#: A user message that withholds confirmation even if it also says "proceed" or "yes".
DEFAULT_NEGATIVE_PATTERNS: tuple[str, ...] = (
    r"^\W*(?:no|nope|nah|not yet|don'?t|do not|wait|hold on|stop)\b",
    r"\b(?:don'?t|do not|not|never) (?:proceed|go ahead|do it|confirm)\b",
    r"\bnot sure\b",
    r"\b(?:don'?t|do not|not|never|no longer)\b[^.?!]{0,30}\b(?:proceed|go ahead|confirm)\b",
    r"\b(?:hold off|not (?:right )?now|let me think|changed my mind)\b",
)

#: A user message that instructs an action outright ("Please downgrade all of them to economy"): an
#: imperative naming an action, not a question. It is consent when the agent had proposed nothing.
DEFAULT_INSTRUCTION_PATTERNS: tuple[str, ...] = (
    r"(?:^|[.!;]\s+)(?:please,?\s+|kindly\s+|now\s+|just\s+|(?:and\s+)?go ahead and\s+|i (?:want|need|would like|'d "
    r"like) you to\s+)?(?:book|cancel|change|modify|update|upgrade|downgrade|add|remove|refund|rebook|reschedule|"
    r"switch|move|send|issue|transfer|process|submit|apply|delete)\b[^.?!]*(?:[.!]|$)",
)

#: An agent message that asks the user to approve an action: what an instruction answers is then a proposal.
DEFAULT_PROPOSAL_PATTERNS: tuple[str, ...] = (
    r"\bplease confirm\b",
    r"\b(?:would you like|do you want|shall i|should i|can i|may i|are you sure|is that (?:ok|okay|correct|right))\b"
    r"[^?]*\?",
    r"\b(?:confirm|proceed|go ahead)\b[^.?!]*\?",
)


@dataclass(frozen=True, slots=True)
class ConfirmationParams:
    tools: tuple[str, ...]
    patterns: tuple[str, ...] = DEFAULT_CONFIRM_PATTERNS
    negative_patterns: tuple[str, ...] = DEFAULT_NEGATIVE_PATTERNS
    instruction_patterns: tuple[str, ...] = DEFAULT_INSTRUCTION_PATTERNS
    proposal_patterns: tuple[str, ...] = DEFAULT_PROPOSAL_PATTERNS
    one_call_per_confirmation: bool = False


class Confirmation(Rule):
    """A consequential tool called only after the user explicitly confirmed the agent's proposal."""

    name = "confirmation"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "patterns", "negative_patterns", "instruction_patterns",
                                            "proposal_patterns", "one_call_per_confirmation"))
        tools = p.strings("tools", required=True)
        assert tools is not None

        def optional(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            return default if p.params.get(key) is None else p.strings(key, allow_empty=True) or ()

        self.params = ConfirmationParams(
            tools=tools,
            patterns=p.strings("patterns") or DEFAULT_CONFIRM_PATTERNS,
            negative_patterns=optional("negative_patterns", DEFAULT_NEGATIVE_PATTERNS),
            instruction_patterns=optional("instruction_patterns", DEFAULT_INSTRUCTION_PATTERNS),
            proposal_patterns=optional("proposal_patterns", DEFAULT_PROPOSAL_PATTERNS),
            one_call_per_confirmation=p.boolean("one_call_per_confirmation", False),
        )
        flags = re.IGNORECASE | re.MULTILINE
        self._yes = p.regexes("patterns", self.params.patterns, flags)
        self._no = p.regexes("negative_patterns", self.params.negative_patterns, flags)
        self._order = p.regexes("instruction_patterns", self.params.instruction_patterns, flags)
        self._proposal = p.regexes("proposal_patterns", self.params.proposal_patterns, flags)

    def _emitter(self, session: SessionView, call: ToolCall) -> NormalizedSpan | None:
        """The llm span whose output asked for ``call``."""
        llm = [s for s in session.spans if s.kind == "llm" and s.start_ns <= call.start_ns]
        if call.call_id:
            # Ids are not always unique (tau-bench reuses one): the latest earlier asker of the same tool wins.
            by_id = [s for s in llm if any(part.get("id") == call.call_id and part.get("name") == call.name
                                           for part in _tool_call_parts(s.output_messages))]
            if by_id:
                return max(by_id, key=lambda s: (s.start_ns, s.end_ns))
        turn_index = next((t.index for t in session.turns for c in t.tool_calls if c.span_id == call.span_id), None)
        candidates = [s for s in llm if s.start_ns <= call.start_ns
                      and any(part.get("name") == call.name for part in _tool_call_parts(s.output_messages))]
        same_turn = [s for s in candidates if s.turn_index == turn_index]
        pool = same_turn or candidates
        return max(pool, key=lambda s: (s.start_ns, s.end_ns)) if pool else None

    def verdict(self, session: SessionView, call: ToolCall) -> str | None:
        """Why ``call`` was not confirmed, or None when it was."""
        span = self._emitter(session, call)
        if span is None:
            raise _Unevaluable(f"cannot find the model call that asked for tool {call.name} (span {call.span_id})")
        messages = span.input_messages
        if not messages:
            raise _Unevaluable(f"the model call that asked for tool {call.name} (span {span.span_id}) has no "
                               "input messages; is message content capture on?")
        last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
        if last_user is None:
            return "no user message before it"
        text = message_text(messages[last_user]) or ""
        quoted = shorten(text, 80)
        if any(p.search(text) for p in self._no):
            return f"the last user message withholds confirmation: {quoted!r}"
        before = next((m for m in reversed(messages[:last_user]) if m.get("role") not in ("system", "developer")),
                      None)
        proposal = message_text(before) if before is not None and before.get("role") == "assistant" else None
        yes = any(p.search(text) for p in self._yes)
        ordered = any(p.search(text) for p in self._order)
        proposed = bool(proposal) and any(p.search(proposal or "") for p in self._proposal)
        if not (yes and proposal) and not (ordered and not proposed):
            if yes:
                return f"the user's {quoted!r} answers no proposal of the agent"
            if ordered:
                return f"the last user message answers the agent's proposal with a new instruction: {quoted!r}"
            return f"the last user message does not confirm: {quoted!r}"
        retried = self._changed_retry(messages[last_user + 1:], call)
        if retried is not None:
            return retried
        if self.params.one_call_per_confirmation:
            for message in messages[last_user + 1:]:
                for part in _tool_call_parts([message]):
                    name = part.get("name")
                    if isinstance(name, str) and matches_any(name, self.params.tools):
                        return f"the confirmation {quoted!r} was already used by {name}"
        return None

    def _changed_retry(self, since: list[dict[str, Any]], call: ToolCall) -> str | None:
        """A consequential call that failed after the user's yes, and this call's arguments differ from it.

        The user agreed to the action as proposed; when it fails and the agent tries something else (another
        payment, another flight), that is a new proposal the user has not seen.
        """
        asked: dict[str, dict[str, Any]] = {}
        failed: list[dict[str, Any]] = []
        for message in since:
            for part in _tool_call_parts([message]):
                if isinstance(part.get("id"), str):
                    asked[part["id"]] = part
            parts = message.get("parts")
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and part.get("type") == "tool_call_response":
                    earlier = asked.get(str(part.get("id")))
                    if earlier is not None and matches_any(str(earlier.get("name")), self.params.tools) \
                            and _RESPONSE_ERRORS.problem(_response_call(earlier, part.get("response"))) is not None:
                        failed.append(earlier)
        if not failed:
            return None
        last = failed[-1]
        if last.get("name") == call.name and parse_json(last.get("arguments")) == parse_json(call.arguments):
            return None
        return (f"its earlier call {last.get('name')} failed after the user's yes and it was tried again with "
                "other arguments the user has not confirmed")

    def check(self, session: SessionView) -> EvalResult:
        calls = [c for c in session.tool_calls if matches_any(c.name, self.params.tools)]
        if not calls:
            return EvalResult.ok(1.0, reason="no consequential tool called")
        problems = []
        for call in calls:
            why = self.verdict(session, call)
            if why is not None:
                problems.append(f"tool {call.name} called without confirmation: {why} (span {call.span_id})")
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(calls)} consequential call(s) confirmed")


_RESPONSE_ERRORS = ToolError()


def _response_call(part: dict[str, Any], response: Any) -> ToolCall:
    """A tool call as the conversation shows it (no span), for :meth:`ToolError.problem`."""
    return ToolCall(name=str(part.get("name")), arguments=part.get("arguments"), result=response, success=True,
                    error_type=None, error_message=None, call_id=str(part.get("id")), span_id="", start_ns=0,
                    end_ns=0)


def _tool_call_parts(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for message in messages:
        parts = message.get("parts")
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict) and part.get("type") == "tool_call":
                    yield part
