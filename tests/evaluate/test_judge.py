"""The LLM judge against a loopback server speaking the OpenAI chat-completions protocol."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch._types import NormalizedSpan
from agentwatch.errors import ConfigError
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.judge import (
    JudgeConfig,
    LLMJudge,
    MemoryJudgeCache,
    VerdictError,
    judge_from_params,
    parse_verdict,
)
from agentwatch.evaluate.session import SessionView
from agentwatch.testing.judge import FakeJudgeServer, JudgeRequest, Reply

KEY_ENV = "AGENTWATCH_TEST_JUDGE_KEY"
KEY = "sk-test-0123456789abcdef-do-not-leak"
MODEL = "gpt-4o-mini"


def make_view(session_id: str = "sess-1", *, user: str = "Where is my order A-1001?",
              answer: str = "Your order A-1001 shipped yesterday.") -> SessionView:
    t = 1_767_225_600_000_000_000
    spans = [
        NormalizedSpan(trace_id="t1", span_id="root", parent_span_id=None, start_ns=t, end_ns=t + 9_000_000,
                       name="invoke_agent support", kind="agent"),
        NormalizedSpan(trace_id="t1", span_id="llm1", parent_span_id="root", start_ns=t + 1, end_ns=t + 2,
                       name="chat", kind="llm", input_text=user),
        NormalizedSpan(trace_id="t1", span_id="tool1", parent_span_id="root", start_ns=t + 3, end_ns=t + 4,
                       name="execute_tool lookup_order", kind="tool", tool_name="lookup_order",
                       tool_args={"order_id": "A-1001"}, tool_result={"status": "shipped"}),
        NormalizedSpan(trace_id="t1", span_id="ret1", parent_span_id="root", start_ns=t + 5, end_ns=t + 6,
                       name="retrieval kb", kind="retrieval",
                       retrieved_documents=[{"id": "kb-7", "score": 0.82, "content": "Orders ship within 2 days."}]),
        NormalizedSpan(trace_id="t1", span_id="llm2", parent_span_id="root", start_ns=t + 7, end_ns=t + 8,
                       name="chat", kind="llm", input_text=user, output_text=answer),
    ]
    summary = {"session_id": session_id, "end_ns": t + 9_000_000, "intent": "order_status", "service": "support"}
    return SessionView.from_spans(summary, spans)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(api_key=KEY) as srv:
        yield srv


def config(server: FakeJudgeServer, **overrides: Any) -> JudgeConfig:
    base: dict[str, Any] = {"base_url": server.base_url, "model": MODEL, "api_key_env": KEY_ENV,
                            "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "timeout_s": 5.0}
    return JudgeConfig(**{**base, **overrides})


def run(judge: LLMJudge, *views: SessionView) -> list[EvalResult]:
    async def main() -> list[EvalResult]:
        async with judge:
            return list(await asyncio.gather(*(judge.evaluate(v) for v in views)))
    return asyncio.run(main())


def run_one(judge: LLMJudge, view: SessionView | None = None) -> EvalResult:
    return run(judge, view or make_view())[0]


def assert_no_key(*things: object) -> None:
    for thing in things:
        text = repr(thing) + str(thing)
        if isinstance(thing, EvalResult):
            text += json.dumps(dataclasses.asdict(thing), default=str)
        assert KEY not in text and KEY[:12] not in text, f"the API key leaked into {text[:200]}"


# -- the happy path ------------------------------------------------------------------------------


def test_good_verdict_sets_score_lineage_tokens_and_cost(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.verdict(0.8, "answer supported by the tool result", prompt_tokens=1000,
                                completion_tokens=50))
    judge = LLMJudge(config(server))
    result = run_one(judge)

    assert result.status == "ok" and result.score == 0.8
    assert result.reason == "answer supported by the tool result"
    assert result.judge_model == MODEL
    assert result.prompt_hash == judge.prompt_hash and len(result.prompt_hash) == 16
    assert (result.tokens_in, result.tokens_out) == (1000, 50)
    assert result.cost_usd == pytest.approx((1000 * 0.15 + 50 * 0.60) / 1e6)
    assert result.error is None and result.raw is None

    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {key}"
    body = request.json
    assert body["model"] == MODEL and body["temperature"] == 0
    assert "response_format" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    prompt = body["messages"][1]["content"]
    assert prompt == judge.render_prompt(make_view())
    assert "User: Where is my order A-1001?" in prompt and "Orders ship within 2 days." in prompt
    assert judge.stats.requests == 1 and judge.stats.tokens_in == 1000


def test_prices_from_config_and_json_response_format(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.verdict(1, "ok", prompt_tokens=2_000_000, completion_tokens=1_000_000, model="my-judge-v2"))
    judge = LLMJudge(config(server, model="my-judge", price_input_per_mtok=1.0, price_output_per_mtok=3.0,
                            json_response_format=True, seed=7))
    result = run_one(judge)
    assert result.score == 1.0 and result.cost_usd == pytest.approx(5.0)
    assert result.judge_model == "my-judge-v2"  # the model that answered
    body = server.requests[0].json
    assert body["response_format"] == {"type": "json_object"} and body["seed"] == 7


def test_unknown_model_without_prices_has_tokens_but_no_cost(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.verdict(0.5, "half", prompt_tokens=10, completion_tokens=2))
    result = run_one(LLMJudge(config(server, model="local-llama")))
    assert result.score == 0.5 and result.tokens_in == 10 and result.cost_usd is None


def test_fenced_json_is_accepted(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply(content='```json\n{"score": 0.25, "reason": "partly"}\n```'))
    result = run_one(LLMJudge(config(server)))
    assert (result.status, result.score, result.reason) == ("ok", 0.25, "partly")


# -- retries and timeouts ------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.rate_limited(retry_after=1))
    started = time.monotonic()
    result = run_one(LLMJudge(config(server)))
    elapsed = time.monotonic() - started
    assert result.status == "ok"
    assert len(server.requests) == 2
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.95
    assert elapsed >= 0.95


def test_retry_after_longer_than_the_cap_fails_at_once(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.rate_limited(retry_after=3600))
    result = run_one(LLMJudge(config(server, retry_after_max_s=5)))
    assert result.is_error and "429" in (result.error or "") and "3600" in (result.error or "")
    assert len(server.requests) == 1


def test_500s_then_success(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.error(500), Reply.error(503), Reply.verdict(0.9, "fine"))
    judge = LLMJudge(config(server))
    result = run_one(judge)
    assert result.status == "ok" and result.score == 0.9
    assert len(server.requests) == 3 and judge.stats.retries == 2


def test_always_500_fails_after_max_retries(server: FakeJudgeServer, key: str) -> None:
    server.default = Reply.error(500, "upstream exploded")
    result = run_one(LLMJudge(config(server, max_retries=3)))
    assert result.is_error and result.score is None
    assert len(server.requests) == 4
    assert "HTTP 500" in (result.error or "") and "upstream exploded" in (result.error or "")
    assert "4 attempts" in (result.error or "")
    assert result.raw and "upstream exploded" in result.raw


def test_400_fails_at_once_with_the_server_message(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply.error(400, "max_tokens is too large for this model"))
    result = run_one(LLMJudge(config(server)))
    assert result.is_error
    assert "HTTP 400" in (result.error or "") and "max_tokens is too large" in (result.error or "")
    assert len(server.requests) == 1


def test_wrong_key_is_401_and_not_retried(server: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    result = run_one(LLMJudge(config(server)))
    assert result.is_error and "HTTP 401" in (result.error or "")
    assert len(server.requests) == 1


def test_slow_answer_past_the_timeout(server: FakeJudgeServer, key: str) -> None:
    server.default = Reply.verdict(1.0, "late", delay_s=1.0)
    started = time.monotonic()
    result = run_one(LLMJudge(config(server, timeout_s=0.3, max_retries=1)))
    elapsed = time.monotonic() - started
    assert result.is_error and result.score is None
    assert "timed out after 0.3s" in (result.error or "") and "2 attempts" in (result.error or "")
    assert len(server.requests) == 2
    assert 0.6 <= elapsed < 1.5


def test_dropped_connection_is_retried(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply(disconnect=True), Reply.verdict(0.7, "ok"))
    result = run_one(LLMJudge(config(server)))
    assert result.status == "ok" and result.score == 0.7 and len(server.requests) == 2


def test_unreachable_judge_fails(key: str) -> None:
    with FakeJudgeServer() as srv:
        url = srv.base_url
    judge = LLMJudge(JudgeConfig(base_url=url, model=MODEL, api_key_env=KEY_ENV, max_retries=1,
                                 backoff_base_s=0.01, backoff_cap_s=0.01))
    result = run_one(judge)
    assert result.is_error and "unreachable after 2 attempts" in (result.error or "")


# -- malformed verdicts --------------------------------------------------------------------------

MALFORMED = {
    "not json": "The agent did well, I'd say 0.9.",
    "no score": '{"reason": "looks fine"}',
    "score out of range": '{"score": 1.7, "reason": "very good"}',
    "negative score": '{"score": -0.1, "reason": "bad"}',
    "score is a word": '{"score": "high", "reason": "good"}',
    "score is a boolean": '{"score": true, "reason": "good"}',
    "score is NaN": '{"score": NaN, "reason": "?"}',
    "pass instead of score": '{"pass": true, "reason": "good"}',
    "no reason": '{"score": 0.5}',
    "reason not a string": '{"score": 0.5, "reason": ["a", "b"]}',
    "prose around json": 'Here is my verdict: {"score": 0.9, "reason": "good"} Hope that helps!',
    "json array": '[{"score": 0.9, "reason": "good"}]',
    "duplicate keys": '{"score": 0.1, "score": 0.9, "reason": "good"}',
    "two objects": '{"score": 0.9, "reason": "a"}\n{"score": 0.1, "reason": "b"}',
    "fence with prose": 'Sure!\n```json\n{"score": 0.9, "reason": "good"}\n```',
    "empty": "",
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_verdicts_are_errors_with_the_raw_text(server: FakeJudgeServer, key: str, content: str) -> None:
    server.script(Reply(content=content, prompt_tokens=100, completion_tokens=10))
    result = run_one(LLMJudge(config(server)))
    assert result.is_error and result.score is None
    assert (result.error or "").startswith("judge verdict does not parse: ")
    assert result.raw == content
    assert result.tokens_in == 100 and result.cost_usd is not None  # the call was paid for
    assert len(server.requests) == 1  # a bad verdict is not retried


@pytest.mark.parametrize("content,expected", [
    ('{"score": 0, "reason": "no"}', (0.0, "no")),
    ('{"score": 1, "reason": "yes", "confidence": 0.8}', (1.0, "yes")),
    ('  {"score": 0.5, "reason": ""}\n', (0.5, "")),
    ('```\n{"score": 0.5, "reason": "r"}\n```', (0.5, "r")),
])
def test_parse_verdict_accepts(content: str, expected: tuple[float, str]) -> None:
    assert parse_verdict(content) == expected


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_parse_verdict_refuses(content: str) -> None:
    with pytest.raises(VerdictError):
        parse_verdict(content)


@pytest.mark.parametrize("body", ["not json at all", '{"choices": []}', '{"choices": [{"message": {}}]}',
                                  '{"choices": [{"message": {"content": null, "refusal": "no"}}]}'])
def test_a_response_that_is_not_a_chat_completion_is_an_error(server: FakeJudgeServer, key: str,
                                                               body: str) -> None:
    server.script(Reply(body=body))
    result = run_one(LLMJudge(config(server)))
    assert result.is_error and result.raw == body
    assert "judge response is not" in (result.error or "")


def test_an_exception_while_rendering_is_an_error_not_a_raise(server: FakeJudgeServer, key: str) -> None:
    class Broken:
        session_id = "x"

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("span store went away")

    judge = LLMJudge(config(server))
    result = asyncio.run(judge.evaluate(Broken()))  # type: ignore[arg-type]
    assert result.is_error and "span store went away" in (result.error or "")
    assert server.requests == []


# -- concurrency and cache ------------------------------------------------------------------------


def test_concurrency_limit_is_respected(server: FakeJudgeServer, key: str) -> None:
    server.default = Reply.verdict(1.0, "ok", delay_s=0.2)
    judge = LLMJudge(config(server, max_concurrency=5))
    started = time.monotonic()
    results = run(judge, *(make_view(f"s{i}", answer=f"answer {i}") for i in range(20)))
    elapsed = time.monotonic() - started
    assert all(r.status == "ok" for r in results) and len(results) == 20
    assert len(server.requests) == 20
    assert server.peak_in_flight == 5
    assert judge.stats.peak_in_flight == 5
    assert elapsed >= 0.75  # four waves of 200 ms


def test_cache_hits_the_same_content_and_misses_a_new_version(server: FakeJudgeServer, key: str) -> None:
    server.default = Reply.verdict(0.6, "mostly", prompt_tokens=500, completion_tokens=20)
    cache = MemoryJudgeCache()
    judge = LLMJudge(config(server), version="goal@1", cache=cache)
    first = run_one(judge, make_view("a"))
    # Same content under another session id and in another event loop: one request in all.
    second = run_one(judge, make_view("a"))
    assert len(server.requests) == 1 and judge.stats.cache_hits == 1
    assert (second.score, second.reason, second.prompt_hash) == (first.score, first.reason, first.prompt_hash)
    assert first.cost_usd and first.cost_usd > 0
    assert (second.cost_usd, second.tokens_in, second.tokens_out) == (0.0, 0, 0)

    run_one(judge, make_view("a", answer="Something else entirely."))
    assert len(server.requests) == 2

    template = "Is this answer polite?\n{answer}\nReply with JSON {{\"score\": 0..1, \"reason\": \"...\"}}"
    other = LLMJudge(config(server, prompt_template=template), version="politeness@1", cache=cache)
    assert other.prompt_hash != judge.prompt_hash
    run_one(other, make_view("a"))
    assert len(server.requests) == 3

    same_prompt_new_version = LLMJudge(config(server), version="goal@2", cache=cache)
    run_one(same_prompt_new_version, make_view("a"))
    assert len(server.requests) == 4


def test_errors_are_not_cached(server: FakeJudgeServer, key: str) -> None:
    server.script(Reply(content="garbage"))
    cache = MemoryJudgeCache()
    judge = LLMJudge(config(server), cache=cache)
    assert run_one(judge).is_error
    assert run_one(judge).status == "ok"
    assert len(server.requests) == 2 and len(cache) == 1


def test_memory_cache_is_a_bounded_lru() -> None:
    cache = MemoryJudgeCache(max_entries=2)
    a, b, c = (EvalResult.ok(x / 10, str(x)) for x in (1, 2, 3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # "a" is now the most recent
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    assert len(cache) == 2


# -- configuration and the key ---------------------------------------------------------------------


@pytest.mark.parametrize("template,message", [
    ("Judge {answr}", "unknown placeholder {answr}"),
    ("Judge {}", "positional"),
    ("Judge {0}", "positional"),
    ("Judge {answer.upper}", "unknown placeholder"),
    ("Judge {answer[0]}", "unknown placeholder"),
    ("Judge {answer!r}", "no format spec"),
    ("Judge {answer:>10}", "no format spec"),
    ("Reply with {\"score\": 1} for {answer}", "unknown placeholder"),
    ("Judge } this {answer}", "literal braces"),
    ("Judge the session", "no session placeholder"),
])
def test_bad_templates_fail_at_construction(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("[", r"\[")):
        JudgeConfig(base_url="http://127.0.0.1:1/v1", model=MODEL, prompt_template=template)


@pytest.mark.parametrize("overrides", [
    {"base_url": "127.0.0.1:8000"}, {"model": " "}, {"temperature": -1}, {"timeout_s": 0},
    {"max_retries": -1}, {"max_concurrency": 0}, {"price_input_per_mtok": 1.0}, {"api_key_env": "sk-abc"},
])
def test_bad_config_values_fail_at_construction(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JudgeConfig(**{"base_url": "http://127.0.0.1:1/v1", "model": MODEL, **overrides})


def test_render_prompt_fields_and_clipping(key: str) -> None:
    template = ("U={user}|A={answer}|T={tool_calls}|D={documents}|E={evidence}|I={intent}|S={session_id}"
                "|V={agent_version}|X={transcript}")
    cfg = JudgeConfig(base_url="http://127.0.0.1:1/v1", model=MODEL, api_key_env=KEY_ENV, prompt_template=template)
    prompt = LLMJudge(cfg).render_prompt(make_view())
    assert "U=Where is my order A-1001?|" in prompt
    assert "A=Your order A-1001 shipped yesterday.|" in prompt
    assert 'T=1. lookup_order({"order_id": "A-1001"}) -> ok: {"status": "shipped"}|' in prompt
    assert "D=[1] id=kb-7 score=0.82\nOrders ship within 2 days.|" in prompt
    assert "I=order_status|S=sess-1|V=(none)|X=User: Where is my order A-1001?" in prompt

    clipped = LLMJudge(dataclasses.replace(cfg, prompt_template="{answer}", max_field_chars=100))
    long = clipped.render_prompt(make_view(answer="head " + "x" * 5000 + " tail"))
    assert long.startswith("head ") and long.endswith(" tail") and "characters cut" in long
    assert len(long) < 200


def test_missing_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = JudgeConfig(base_url="http://127.0.0.1:1/v1", model=MODEL, api_key_env=KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        LLMJudge(cfg)
    # No key variable: no Authorization header (a local Ollama or vLLM).
    with FakeJudgeServer() as srv:
        run_one(LLMJudge(JudgeConfig(base_url=srv.base_url, model="llama3", api_key_env=None)))
        assert "authorization" not in srv.requests[0].headers


def test_judge_from_params(server: FakeJudgeServer, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params: dict[str, Any] = {"base_url": server.base_url, "model": MODEL, "api_key_env": KEY_ENV,
                              "prompt": "Rate {answer}",
                              "timeout_s": 2, "max_retries": 0}
    judge = judge_from_params(params, version="rate@1")
    assert judge.version == "rate@1" and judge.config.prompt_template == "Rate {answer}"
    server.script(Reply.verdict(0.4, "meh"))
    assert run_one(judge).score == 0.4

    for bad, message in [({**params, "promt": "x"}, "unknown judge parameter 'promt'"),
                         ({**params, "temperature": "0"}, "'temperature': expected int or float"),
                         ({**params, "max_retries": True}, "'max_retries': expected int"),
                         ({**params, "prompt_template": "x {answer}"}, "given twice"),
                         ({"model": MODEL}, "'base_url' is required"),
                         ({**params, "prompt": "Rate {answr}"}, "unknown placeholder")]:
        with pytest.raises(ValueError, match=message):
            judge_from_params(bad, version="v")

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError):
        judge_from_params(params, version="v")
    unchecked = judge_from_params(params, version="v", check_only=True)
    result = run_one(unchecked)
    assert result.is_error and f"{KEY_ENV} is not set" in (result.error or "")
    assert len(server.requests) == 1  # nothing sent without the key


def test_the_key_never_leaks(server: FakeJudgeServer, key: str) -> None:
    def echo_key(request: JudgeRequest) -> Reply:
        auth = request.headers.get("authorization", "")
        return Reply.error(400, f"bad request from {auth}")

    judge = LLMJudge(config(server, max_retries=1))
    results = []
    server.script(Reply.verdict(0.9, f"the key was {key}"), Reply(content=f"not json {key}"),
                  Reply.error(500, f"echo {key}"), Reply.error(500, f"echo {key}"))
    results += [run_one(judge), run_one(judge), run_one(judge)]
    server.handler = echo_key
    results.append(run_one(judge))
    assert results[0].status == "ok" and all(r.is_error for r in results[1:])
    assert "<redacted>" in results[0].reason and "<redacted>" in (results[-1].error or "")
    assert_no_key(judge, judge.config, judge.stats, *results)
    with pytest.raises(ValueError) as excinfo:
        JudgeConfig(base_url="http://127.0.0.1:1/v1", model=MODEL, api_key_env=KEY)
    assert_no_key(excinfo.value)


# -- throughput (functional smoke check, no timing assertion) ---------------------------------------


def test_hundreds_of_concurrent_slow_judge_calls(key: str) -> None:
    with FakeJudgeServer(default=Reply.verdict(0.9, "fine", delay_s=0.5)) as srv:
        judge = LLMJudge(config(srv, max_concurrency=150, timeout_s=10.0))
        views = [make_view(f"s{i}", answer=f"answer number {i}") for i in range(300)]
        started = time.monotonic()
        results = run(judge, *views)
        elapsed = time.monotonic() - started
        assert all(r.status == "ok" for r in results), [r.error for r in results if r.is_error][:3]
        assert len(srv.requests) == 300
        assert srv.peak_in_flight >= 100
        print(f"\n300 judged sessions in {elapsed:.2f}s ({300 / elapsed:.0f}/s), "
              f"peak in flight at the server {srv.peak_in_flight}, retries {judge.stats.retries}")
