"""One session of the support agent as OTLP spans, in event time.

A :class:`_Conversation` holds the state of one session while its scenario
(``intents``) plays it; each :class:`_Turn` adds the spans of one user turn,
through :mod:`agentwatch.otlp`: knowledge-base retrieval, chat calls with
their GenAI messages, tool calls that may fail as the session's
:class:`~agentwatch.traffic.generator.Conditions` say, the output guardrail,
and the turn's ``invoke_agent`` root. ``finish`` wraps the session's traces
in one export request with its truth.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.otlp import TraceBuilder, export_request, sdk_resource
from agentwatch.traffic.generator.records import (
    ERROR_KINDS,
    Conditions,
    ErrorKind,
    GeneratedSession,
    PolicyViolation,
    SessionTruth,
    ToolError,
    UnsupportedClaim,
)
from agentwatch.traffic.generator.world import (
    _CARRIERS,
    _CATALOG,
    _FIRST_NAMES,
    _GUARDRAIL,
    _KB,
    _PLANS,
    _SERVICES,
    _SYSTEM_PROMPT,
    _TOOL_DESCRIPTIONS,
    _TOOL_LATENCY_MS,
    DATA_SOURCE,
    Amount,
    Day,
    Fact,
    _add_business_days,
    _money,
    evidence_values,
)

if TYPE_CHECKING:
    from agentwatch.traffic.generator import Generator

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
_SYSTEM_FINGERPRINT = "fp_7c3f1b2a9d"
_RESPONSE_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
}
#: Tokens of the tool definitions sent with every request (not recorded as content).
_TOOL_DEFINITION_TOKENS = 412
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def compact_json(value: Any) -> str:
    """JSON as the GenAI instrumentation writes content attributes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def tool_call_part(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_message(call_id: str, response: str) -> dict[str, Any]:
    return {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": response}]}


def random_token(rng: random.Random, length: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    first_name: str
    plan: str
    billing_day: int


@dataclass(frozen=True)
class _ToolOutcome:
    """What the agent got back from a tool call, as the agent understood it."""

    result: dict[str, Any] | None
    #: A silent error the agent took for success (``result`` is None).
    masked: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None


class _Conversation:
    """The state of one session while its turns are generated."""

    def __init__(self, gen: Generator, rng: random.Random, intent: str, start_ns: int,
                 conditions: Conditions) -> None:
        self.gen = gen
        self.rng = rng
        self.intent = intent
        self.conditions = conditions
        self.rates = conditions.rates
        self.start_ns = start_ns
        self.t = start_ns
        self.today = datetime.fromtimestamp(start_ns // NS_PER_S, UTC).date()
        self.session_id = "conv_" + random_token(rng, 24)
        number = rng.randint(1, 5000)
        profile = random.Random(f"agentwatch.traffic:{gen.seed}:customer:{number}")
        self.customer = _Customer(f"cust-{number:05d}", profile.choice(_FIRST_NAMES),
                                  profile.choices(list(_PLANS), weights=[5, 4, 2])[0], profile.randint(1, 28))
        self.instance_id = gen.instance_ids[rng.randrange(len(gen.instance_ids))]
        self.single_trace = rng.random() < gen.single_trace_share
        self.history: list[dict[str, Any]] = []
        self.traces: list[TraceBuilder] = []
        self.turns = 0
        self.tool_calls = 0
        #: Calls made so far, per tool.
        self.calls_of: dict[str, int] = {}
        self.tool_errors: list[ToolError] = []
        self.claims: list[UnsupportedClaim] = []
        self.violations: list[PolicyViolation] = []
        self.goal_failed = False
        self.incidents: tuple[str, ...] = ()
        self._session_root: tuple[TraceBuilder, bytes] | None = None

    # -- time
    def advance_ms(self, low: float, high: float) -> int:
        """Move the clock by a uniform pause; returns the new time."""
        self.t += int(self.rng.uniform(low, high) * NS_PER_MS)
        return self.t

    def latency_ns(self, median_ms: float, sigma: float = 0.35) -> int:
        ms = median_ms * self.rng.lognormvariate(0, sigma) * self.conditions.latency_factor
        return max(NS_PER_MS, int(ms * NS_PER_MS))

    # -- structure
    def root_attributes(self) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.gen.agent_name,
            "gen_ai.agent.description": "Acme customer-support agent",
            "gen_ai.request.model": self.conditions.model,
            "gen_ai.conversation.id": self.session_id,
            "user.id": self.customer.customer_id,
            "agentwatch.intent": self.intent,
        }

    def turn(self, user_text: str) -> _Turn:
        if self.turns:
            self.t += int(min(150.0, 8 + self.rng.lognormvariate(math.log(20), 0.6)) * NS_PER_S)
        self.turns += 1
        if self.single_trace:
            if self._session_root is None:
                trace = TraceBuilder(self.rng)
                self.traces.append(trace)
                self._session_root = (trace, trace.new_span_id())
            trace, root = self._session_root
            return _Turn(self, self.turns - 1, user_text, trace, root, owns_root=False)
        trace = TraceBuilder(self.rng)
        self.traces.append(trace)
        return _Turn(self, self.turns - 1, user_text, trace, trace.new_span_id(), owns_root=True)

    def close_root(self, trace: TraceBuilder, root: bytes, start_ns: int) -> None:
        self.t += int(self.rng.uniform(1, 4) * NS_PER_MS)
        trace.add(root, None, f"invoke_agent {self.gen.agent_name}", Span.SPAN_KIND_INTERNAL, start_ns, self.t,
                  self.root_attributes())

    def finish(self) -> GeneratedSession:
        if self._session_root is not None:
            trace, root = self._session_root
            self.close_root(trace, root, self.start_ns)
        resource = sdk_resource(self.gen.service_name, self.conditions.agent_version, self.instance_id,
                                self.gen.environment)
        spans = [span for trace in self.traces for span in trace.spans]
        truth = SessionTruth(
            intent=self.intent, conditions=self.conditions, turns=self.turns,
            trace_ids=tuple(trace.trace_id.hex() for trace in self.traces), tool_calls=self.tool_calls,
            tool_errors=tuple(self.tool_errors), unsupported_claims=tuple(self.claims),
            policy_violations=tuple(self.violations), goal_failed=self.goal_failed, incidents=self.incidents)
        end_ns = max(span.end_time_unix_nano for span in spans)
        return GeneratedSession(self.start_ns, end_ns, self.session_id, self.intent,
                                export_request(resource, spans), truth)

    # -- shop data
    def order(self, *, status: str, delivered_days_ago: int = 0) -> dict[str, Any]:
        """An order in ``status`` (processing, shipped or delivered), as ``lookup_order`` returns it."""
        rng = self.rng
        name, price = rng.choice(_CATALOG)
        quantity = 1 if rng.random() < 0.85 else 2
        if status == "delivered":
            delivered = self.today - timedelta(days=delivered_days_ago)
            shipped = delivered - timedelta(days=rng.randint(1, 4))
            ordered = shipped - timedelta(days=rng.randint(0, 2))
        else:
            ordered = self.today - timedelta(days=rng.randint(0, 1) if status == "processing" else rng.randint(1, 4))
            shipped = ordered + timedelta(days=1)
        order: dict[str, Any] = {
            "order_id": f"A-{rng.randint(10000, 99999)}",
            "status": status,
            "ordered_on": ordered.isoformat(),
            "items": [{"name": name, "quantity": quantity, "unit_price": float(price)}],
            "total": _money(Decimal(price) * quantity),
            "currency": "USD",
        }
        if status != "processing":
            carrier = rng.choice(_CARRIERS)
            order["carrier"] = carrier
            order["tracking_number"] = _tracking_number(rng, carrier)
            order["shipped_on"] = shipped.isoformat()
        if status == "delivered":
            order["delivered_on"] = delivered.isoformat()
        else:
            order["estimated_delivery"] = _add_business_days(self.today, rng.randint(1, 5)).isoformat()
        return order

    def last_billing_date(self) -> date:
        """The customer's most recent billing day, today included."""
        day = self.today.replace(day=self.customer.billing_day)
        if day > self.today:
            day = (day.replace(day=1) - timedelta(days=1)).replace(day=self.customer.billing_day)
        return day

    def renewal_date(self) -> date:
        """The customer's next billing day, after today."""
        day = self.today.replace(day=self.customer.billing_day)
        if day <= self.today:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=self.customer.billing_day)
        return day


def _tracking_number(rng: random.Random, carrier: str) -> str:
    if carrier == "UPS":
        return "1Z" + random_token(rng, 16, "0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
    if carrier == "DHL":
        return random_token(rng, 10, "0123456789")
    return "94" + random_token(rng, 20, "0123456789")


class _Turn:
    """One user turn: retrieval, chat and tool spans, then the answer."""

    def __init__(self, conv: _Conversation, index: int, user_text: str, trace: TraceBuilder, root: bytes,
                 *, owns_root: bool) -> None:
        self.conv = conv
        self.index = index
        self.trace = trace
        self.root = root
        self.owns_root = owns_root
        self.start_ns = conv.t
        self.messages: list[dict[str, Any]] = [text_message("user", user_text)]
        self.documents: list[str] = []
        self.evidence: list[str] = []
        conv.advance_ms(2, 8)

    # -- spans
    def retrieve(self, query: str, doc_ids: Sequence[str]) -> None:
        """Search the knowledge base; the hits join the system prompt of this turn's model calls."""
        conv = self.conv
        rng = conv.rng
        distractors = [d for d in _KB if d not in doc_ids]
        hits = list(doc_ids) + [rng.choice(distractors)]
        score = rng.uniform(0.82, 0.93)
        documents = []
        for doc_id in hits:
            title, content = _KB[doc_id]
            documents.append({"id": doc_id, "score": round(score, 4), "content": f"{title}. {content}"})
            self.documents.append(f"[{doc_id}] {title}. {content}")
            self.evidence.append(content)
            score -= rng.uniform(0.03, 0.12)
        start = conv.t
        end = start + conv.latency_ns(95, 0.4)
        self.trace.add(self.trace.new_span_id(), self.root, f"retrieval {DATA_SOURCE}", Span.SPAN_KIND_CLIENT,
                       start, end, {
                           "gen_ai.operation.name": "retrieval",
                           "gen_ai.data_source.id": DATA_SOURCE,
                           "gen_ai.retrieval.query.text": query,
                           "gen_ai.retrieval.top_k": len(hits),
                           "gen_ai.retrieval.documents": compact_json(documents),
                       })
        conv.t = end + conv.rng.randint(1, 4) * NS_PER_MS

    def _chat(self, output_parts: list[dict[str, Any]], finish_reason: str) -> bytes:
        conv = self.conv
        rng = conv.rng
        system = _SYSTEM_PROMPT
        if self.documents:
            system += "\n\nKnowledge-base articles:\n" + "\n".join(self.documents)
        inputs = [text_message("system", system), *conv.history, *self.messages]
        outputs = [{"role": "assistant", "parts": output_parts, "finish_reason": finish_reason}]
        input_json = compact_json(inputs)
        output_json = compact_json(outputs)
        tokens_in = _TOOL_DEFINITION_TOKENS + len(input_json) // 4 + 4 * len(inputs)
        tokens_out = rng.randint(1, 9) + sum(
            len(p["content"]) // 4 if p["type"] == "text" else 12 + len(p["name"] + json.dumps(p["arguments"])) // 4
            for p in output_parts)
        model = conv.conditions.model
        span_id = self.trace.new_span_id()
        start = conv.t
        ms = 380 + tokens_out * rng.uniform(14, 28) + tokens_in * 0.05
        end = start + conv.latency_ns(ms, 0.25)
        self.trace.add(span_id, self.root, f"chat {model}", Span.SPAN_KIND_CLIENT, start, end, {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.provider.name": "openai",
            "server.address": "api.openai.com",
            "server.port": 443,
            "gen_ai.conversation.id": conv.session_id,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.response.finish_reasons": [finish_reason],
            "gen_ai.response.model": _RESPONSE_MODELS.get(model, model),
            "gen_ai.response.id": "chatcmpl-" + random_token(rng, 29),
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "gen_ai.input.messages": input_json,
            "gen_ai.output.messages": output_json,
            "openai.response.system_fingerprint": _SYSTEM_FINGERPRINT,
        })
        conv.t = end + rng.randint(1, 5) * NS_PER_MS
        return span_id

    def tool(self, name: str, arguments: dict[str, Any], result: dict[str, Any], *,
             maskable: bool = False, retries: int = 1) -> _ToolOutcome:
        """The model asks for ``name``; the tool runs, fails transiently or returns ``result``."""
        conv = self.conv
        rng = conv.rng
        rates = conv.rates
        if conv.tool_calls == 0 and conv.conditions.give_up > 0 and rng.random() < conv.conditions.give_up:
            return _ToolOutcome(None)  # the model answers without calling any tool
        call_id = "call_" + random_token(rng, 24)
        self._chat([tool_call_part(call_id, name, arguments)], "tool_calls")
        self.messages.append({"role": "assistant", "parts": [tool_call_part(call_id, name, arguments)]})
        conv.tool_calls += 1
        span_id = self.trace.new_span_id()
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.description": _TOOL_DESCRIPTIONS[name],
            "gen_ai.tool.call.arguments": compact_json(arguments),
        }
        start = conv.t
        earlier_calls = conv.calls_of.get(name, 0)
        conv.calls_of[name] = earlier_calls + 1
        fault = next((f for f in conv.conditions.tool_faults if f.tool == name), None)
        if fault is not None and fault.first_only and earlier_calls:
            fault = None
        if fault is not None and rng.random() < fault.rate:
            failure: ErrorKind | None = fault.kind
        else:
            fault = None
            failure = ERROR_KINDS[rng.randrange(len(ERROR_KINDS))] if rng.random() < rates.tool_error else None
        if failure is None:
            reshape = next((r for r in conv.conditions.tool_reshapes if r.tool == name), None)
            text = json.dumps(result if reshape is None else reshape.apply(result))
            attributes["gen_ai.tool.call.result"] = text
            end = start + conv.latency_ns(_TOOL_LATENCY_MS[name])
            self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                           attributes)
            self._tool_response(call_id, text, end)
            self.evidence.append(text)
            return _ToolOutcome(result)

        end = start + int(rng.uniform(*failure.duration_ms) * NS_PER_MS)
        silent = fault.silent if fault is not None else rng.random() < rates.silent_error_share
        if silent:
            text = json.dumps(failure.silent_result)
            attributes["gen_ai.tool.call.result"] = text
            self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                           attributes)
            self._tool_response(call_id, text, end)
            masked = maskable and (fault is not None or rng.random() < rates.masked_share)
            conv.goal_failed = conv.goal_failed or masked
            self._record_error(name, call_id, span_id, failure, silent=True, recovered=False, masked=masked)
            return _ToolOutcome(None, masked=masked)

        message = failure.message.format(service=_SERVICES[name])
        attributes["error.type"] = failure.error_type
        self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                       attributes, error=message)
        self._tool_response(call_id, f"Error: {message}", end)
        if retries > 0 and rng.random() < 0.6:
            outcome = self.tool(name, arguments, result, maskable=maskable, retries=retries - 1)
            self._record_error(name, call_id, span_id, failure, silent=False, recovered=outcome.ok, masked=False)
            return outcome
        self._record_error(name, call_id, span_id, failure, silent=False, recovered=False, masked=False)
        return _ToolOutcome(None)

    def _tool_response(self, call_id: str, text: str, end_ns: int) -> None:
        self.messages.append(tool_response_message(call_id, text))
        self.conv.t = end_ns + self.conv.rng.randint(1, 4) * NS_PER_MS

    def _record_error(self, name: str, call_id: str, span_id: bytes, failure: ErrorKind, *, silent: bool,
                      recovered: bool, masked: bool) -> None:
        self.conv.tool_errors.append(ToolError(self.index, name, call_id, span_id.hex(), failure.name, silent,
                                               recovered, masked))

    def violation(self, rule: str, detail: str) -> None:
        """Record that the last tool span acted against ``rule``.

        A span with status ERROR did not act (the tool refused the request): nothing is recorded. An
        error-shaped result with status UNSET counts, as the span says the action was taken.
        """
        span = self.trace.spans[-1]
        if span.status.code == Status.STATUS_CODE_ERROR:
            return
        self.conv.violations.append(PolicyViolation(self.index, rule, span.span_id.hex(), detail))

    def reply(self, template: str, **facts: Fact) -> None:
        """The final answer of the turn; closes it."""
        conv = self.conv
        claim: tuple[str, str, str] | None = None
        eligible = [key for key, value in facts.items() if isinstance(value, (Amount, Day))]
        if eligible and conv.rng.random() < conv.rates.unsupported_claim:
            key = conv.rng.choice(eligible)
            original = facts[key]
            replacement = self._unsupported(original)
            facts = {**facts, key: replacement}
            claim = ("amount" if isinstance(original, Amount) else "date", str(replacement), str(original))
        text = template.format(**{key: str(value) for key, value in facts.items()})
        span_id = self._chat([{"type": "text", "content": text}], "stop")
        self._guardrail(span_id)
        if claim is not None:
            conv.claims.append(UnsupportedClaim(self.index, span_id.hex(), claim[0], claim[1], claim[2]))
        self.messages.append(text_message("assistant", text))
        conv.history.extend(self.messages)
        if self.owns_root:
            conv.close_root(self.trace, self.root, self.start_ns)

    def _guardrail(self, chat_id: bytes) -> None:
        """The output guardrail that screens the answer while it streams: a span of its own, operation
        ``apply_guardrail``, that passes (the simulated agent says nothing a filter stops). It draws nothing
        from the random stream and ends with the chat, so the session's other spans, times and outcomes
        are what they would be without it."""
        chat = self.trace.spans[-1]
        self.trace.add(hashlib.blake2b(chat_id, digest_size=8, person=b"guardrail").digest(), self.root,
                       f"apply_guardrail {_GUARDRAIL}", Span.SPAN_KIND_INTERNAL, chat.start_time_unix_nano,
                       chat.end_time_unix_nano, {
                           "gen_ai.operation.name": "apply_guardrail",
                           "gen_ai.conversation.id": self.conv.session_id,
                       })

    def _unsupported(self, fact: Fact) -> Fact:
        rng = self.conv.rng
        amounts, dates = evidence_values(self.evidence)
        for _ in range(200):
            if isinstance(fact, Amount):
                delta = Decimal(rng.choice((1, 2, 3, 5, 7, 10, 12, 15))) * rng.choice((1, -1))
                value = fact.value + delta + rng.choice((Decimal("0"), Decimal("0.49"), Decimal("-0.51")))
                if value > 0 and value.quantize(Decimal("0.01")) not in amounts:
                    return Amount(value)
            elif isinstance(fact, Day):
                shifted = fact.value + timedelta(days=rng.choice((1, 2, 3, 4, 6, 7, 9)) * rng.choice((1, -1)))
                if shifted.isoformat() not in dates:
                    return Day(shifted)
        raise RuntimeError(f"no unsupported value found for {fact!r}")  # pragma: no cover

    def apologize(self, what: str) -> None:
        self.reply(self.conv.rng.choice((
            "I'm sorry, I couldn't reach our {what} just now. Please try again in a few minutes, or reply here "
            "and a colleague will follow up.",
            "Sorry, something went wrong on our side while contacting the {what}. Nothing has been changed; "
            "please try again shortly.",
        )), what=what)
