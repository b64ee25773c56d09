"""The demo's scenarios and its feeder: history at full speed, then live traffic, and a log of alerts.

A :class:`Scenario` switches incidents on at set times before the demo's
start ("now"): ``--days`` of history end at now and are sent as fast as the
server takes them (direct OTLP/HTTP requests, :func:`~agentwatch.traffic.send`),
so baselines exist and the incidents have run their course in event time by
the time history is in; live sessions follow through the OpenTelemetry SDK's
exporter (:class:`~agentwatch.traffic.otel.SdkSender`), at ``speed`` seconds of
event time per second. The incidents stay on in live traffic.

:class:`AlertLog` polls ``GET /api/v1/alerts`` and prints one line per alert
that fires or resolves. Nothing here reads the generator's truth: the server
judges what it received, as it would a real agent's traces.

``EXPECTED`` in each scenario is what the example configuration
(``examples/support-agent/agentwatch.yaml``) fires for it within the demo's
time budget (measured; ``docs/demo.md`` has the figures), and what
``tests/cli/test_demo.py`` asserts.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from agentwatch.traffic.generator import GeneratedSession, Generator
from agentwatch.traffic.incidents import INCIDENTS
from agentwatch.traffic.sender import send

__all__ = ["SCENARIOS", "AlertLog", "Feeder", "Scenario", "wait_ready"]

_NS = 1_000_000_000


@dataclass(frozen=True)
class Scenario:
    """Incidents (by ``INCIDENTS`` name, with their parameters) and how many minutes before the demo's start
    each begins."""

    name: str
    summary: str
    incidents: tuple[tuple[str, float, dict[str, Any]], ...] = ()
    #: Alert kinds the example configuration fires for it within the demo's time budget.
    expected: tuple[str, ...] = ()

    def make(self, now_ns: int) -> list[Any]:
        return [dataclasses.replace(INCIDENTS[name](now_ns - int(minutes * 60 * _NS)), **params)
                for name, minutes, params in self.incidents]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("showcase", "the refund API's access token expired 90 minutes ago and the agent keeps confirming "
             "refunds; an off-policy refund 20 minutes ago",
             (("auth_token_expiry", 90, {}), ("off_policy_refund", 20, {})), ("new_cluster", "rare_event")),
    Scenario("steady", "no incident: transient tool errors, a few unsupported claims, the daily cycle"),
    Scenario("auth_token_expiry", "refund_api answers 401 token expired (status UNSET) from 90 minutes ago; "
             "the agent tells customers their refund went through", (("auth_token_expiry", 90, {}),),
             ("new_cluster",)),
    Scenario("tool_schema_change", "lookup_order renames total and delivered_on from 90 minutes ago",
             (("tool_schema_change", 90, {}),), ("new_cluster", "evaluator_errors")),
    Scenario("faithfulness_drop", "agent version 1.1.0 from 5 hours ago states unsupported amounts and dates "
             "in 12% of sessions (3% before)", (("new_agent_version", 300, {"unsupported_claim_rate": 0.12}),),
             ("drift",)),
    Scenario("off_policy_refund", "one refund of an order delivered more than 30 days ago, 20 minutes ago",
             (("off_policy_refund", 20, {}),), ("rare_event",)),
    Scenario("latency_regression", "order-status sessions twice as slow from 2 hours ago",
             (("slow_intent", 120, {"intent": "order_status"}),), ("burn_rate",)),
    Scenario("goal_completion_drop", "40% of refund sessions end without the refund from 3 hours ago (3% before)",
             (("goal_failures", 180, {"intent": "refund", "increase": 0.4}),), ("burn_rate",)),
)}


#: Sessions per OTLP request while the history is sent.
HISTORY_PER_REQUEST = 20


def wait_ready(url: str, timeout_s: float = 30.0, stop: threading.Event | None = None) -> bool:
    """True once ``{url}/readyz`` answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _clock(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / _NS, UTC).strftime("%a %H:%M UTC")


class Feeder:
    """Sends a scenario's history, then live traffic, to ``url``; ``echo`` gets the progress lines."""

    def __init__(self, url: str, scenario: Scenario, *, days: float = 2.0, rate: float = 60.0, seed: int = 1,
                 speed: float = 1.0, api_key: str | None = None, echo: Callable[[str], None] = print,
                 now_ns: int | None = None) -> None:
        if days <= 0 or rate <= 0 or speed <= 0:
            raise ValueError("days, rate and speed must be positive")
        self.url = url
        self.scenario = scenario
        self.days = days
        self.rate = rate
        self.seed = seed
        self.speed = speed
        self.api_key = api_key
        self.echo = echo
        self.now_ns = now_ns if now_ns is not None else time.time_ns()
        self.stop = threading.Event()
        self.history_sessions = 0
        self.history_seconds: float | None = None
        self.live_sessions = 0
        self.error: BaseException | None = None

    def _until_stopped(self, sessions: Iterable[GeneratedSession], start_ns: int) -> Iterator[GeneratedSession]:
        span_ns = self.now_ns - start_ns
        began = last = time.monotonic()
        for session in sessions:
            if self.stop.is_set():
                return
            self.history_sessions += 1
            moment = time.monotonic()
            if moment - last >= 2.0:
                last = moment
                done = (session.start_ns - start_ns) / span_ns
                self.echo(f"history {done:4.0%}: {self.history_sessions} sessions, event time "
                          f"{_clock(session.start_ns)} ({moment - began:.0f}s)")
            yield session

    def run(self) -> None:
        """History, then live traffic until ``stop`` is set. Errors end the feed and are kept in ``error``."""
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported to the user, never raised into the server
            self.error = exc
            self.echo(f"demo traffic stopped: {exc}")

    def _run(self) -> None:
        from agentwatch.traffic.otel import SdkSender

        incidents = self.scenario.make(self.now_ns)
        start_ns = self.now_ns - int(self.days * 86400 * _NS)
        began = time.monotonic()
        history = Generator(self.seed, start_ns, self.rate, incidents=incidents)
        # History goes as a collector's batch processor would send it: many sessions a request.
        result = send(self._until_stopped(history.sessions(until_ns=self.now_ns), start_ns), self.url,
                      api_key=self.api_key, per_request=HISTORY_PER_REQUEST)
        self.history_seconds = time.monotonic() - began
        if self.stop.is_set():
            return
        self.echo(f"history 100%: {result.sessions} sessions ({result.spans} spans) of {self.days:g} days in "
                  f"{self.history_seconds:.0f}s; live traffic follows at {self.speed:g}x")
        # Live sessions come through the OpenTelemetry SDK exporter; a different seed keeps their ids new.
        live = Generator(self.seed + 1_000_003, self.now_ns, self.rate, incidents=incidents)
        sender = SdkSender(self.url, api_key=self.api_key)
        wall0 = time.time()
        try:
            for session in live.sessions():
                due = wall0 + (session.start_ns - self.now_ns) / _NS / self.speed
                while not self.stop.is_set() and time.time() < due:
                    self.stop.wait(min(1.0, due - time.time()))
                if self.stop.is_set():
                    return
                sender.send(session)
                self.live_sessions += 1
        finally:
            sender.shutdown()


class AlertLog:
    """Prints a line for each alert that fires, escalates or resolves on the server at ``url``."""

    def __init__(self, url: str, *, api_key: str | None = None, echo: Callable[[str], None] = print) -> None:
        self.url = url
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.echo = echo
        self.seen: dict[str, tuple[str, str]] = {}
        self.kinds: set[str] = set()
        self.began = time.monotonic()
        self.stop = threading.Event()

    def poll(self) -> list[dict[str, Any]]:
        """One look at the alerts; answers (and prints) the new or changed ones."""
        response = httpx.get(self.url + "/api/v1/alerts", params={"limit": 1000}, headers=self.headers, timeout=30)
        response.raise_for_status()
        changed = []
        for alert in reversed(response.json()["items"]):
            key = str(alert["id"])
            state = (str(alert["state"]), str(alert["severity"]))
            if self.seen.get(key) == state:
                continue
            self.seen[key] = state
            self.kinds.add(str(alert["kind"]))
            changed.append(alert)
            self.echo(self.line(alert))
        return changed

    def line(self, alert: dict[str, Any]) -> str:
        labels = alert.get("labels") or {}
        where = " ".join(f"{k}={v}" for k, v in labels.items() if v and k != "service")
        return (f"[+{time.monotonic() - self.began:4.0f}s] {str(alert['state']).upper():8} {alert['severity']:6} "
                f"{alert['kind']:16} {alert.get('evaluator') or alert.get('rule') or ''} {where} "
                f"started {str(alert['started_at'])[11:16]}: {alert.get('summary') or ''}").replace("  ", " ")

    def run(self, interval_s: float = 1.0) -> None:
        while not self.stop.is_set():
            try:
                self.poll()
            except (httpx.HTTPError, KeyError, ValueError):
                pass  # the server is starting or stopping
            self.stop.wait(interval_s)
