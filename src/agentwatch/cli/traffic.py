"""``agentwatch replay`` and ``agentwatch import``: feed a server with traffic.

Both are plain ``click.Command`` objects, registered on the ``agentwatch``
group by ``agentwatch.cli``::

    agentwatch replay --duration 1h --rate 120 --flush          # the last hour of a support agent
    agentwatch replay --live                                    # real time, until Ctrl-C
    agentwatch replay --start 2026-01-01T00:00:00Z --duration 4d --incident new_tool_error --flush
    agentwatch import shared/data/tau-bench/gpt-4o-airline-dev.json --flush
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from agentwatch.errors import AgentwatchError
from agentwatch.settings import parse_duration

if TYPE_CHECKING:
    from agentwatch.traffic import SendResult

DEFAULT_URL = "http://127.0.0.1:4318"
NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

url_option = click.option("--url", default=DEFAULT_URL, show_default=True,
                          help="The server's OTLP/HTTP base URL (spans go to {url}/v1/traces).")
api_key_option = click.option("--api-key", default=None, envvar="AGENTWATCH_API_KEY",
                              help="API key, when the server has keys (env AGENTWATCH_API_KEY).")
flush_option = click.option("--flush", is_flag=True,
                            help="Complete every open session at the end (POST /api/v1/admin/flush).")


def parse_time(value: str) -> int:
    """Unix nanoseconds from an RFC 3339 time (``2026-01-01T00:00:00Z``) or a date; naive means UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"expected an RFC 3339 time like 2026-01-01T00:00:00Z, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH
    return (since.days * 86400 + since.seconds) * NS_PER_S + since.microseconds * 1000


def _duration_s(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--duration'") from None
    if seconds <= 0:
        raise click.BadParameter("must be positive", param_hint="'--duration'")
    return seconds


def _summary(result: SendResult, flushed: dict[str, Any] | None) -> str:
    line = (f"sent {result.sessions} sessions, {result.spans} spans in {result.requests} requests "
            f"in {result.seconds:.1f}s")
    if result.rejected_spans:
        line += f", {result.rejected_spans} spans rejected"
    if result.retries:
        line += f", {result.retries} retries"
    if result.interrupted:
        line += " (interrupted)"
    if flushed is not None:
        line += f"; flushed, {flushed.get('completed_sessions', 0)} sessions completed"
    return line


@click.command("replay")
@url_option
@api_key_option
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed and start, same traffic.")
@click.option("--start", default=None,
              help="Event time of the first session, e.g. 2026-01-01T00:00:00Z [default: now minus --duration].")
@click.option("--duration", default="1d", show_default=True, help="Event time to cover: 30m, 6h, 1d, 1w.")
@click.option("--rate", default=120.0, show_default=True, type=float,
              help="Mean sessions per hour (the daily cycle runs from 0.3x at night to 1.6x at peak).")
@click.option("--live", is_flag=True, help="Start now and send in real time, until Ctrl-C or --duration.")
@flush_option
@click.option("--agent-version", default="1.0.0", show_default=True, help="service.version of the agent.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Requests in flight at once.")
@click.option("--per-request", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Sessions in one OTLP request (a collector's batch processor sends many).")
@click.option("--incident", "incidents", multiple=True, metavar="NAME[@START]",
              help="Switch on an incident (new_tool_error, off_policy_refund, new_agent_version, slow_intent, "
                   "goal_failures) from START [default: 10:00 UTC on day 3 of the replay]. Repeatable.")
def replay(url: str, api_key: str | None, seed: int, start: str | None, duration: str, rate: float, live: bool,
           flush: bool, agent_version: str, concurrency: int, per_request: int, incidents: tuple[str, ...]) -> None:
    """Send a simulated support agent's sessions over OTLP, in event time."""
    from agentwatch.traffic import Generator, incident_from_spec, send
    from agentwatch.traffic import flush as flush_server

    seconds = _duration_s(duration)
    if rate <= 0:
        raise click.BadParameter("must be positive", param_hint="'--rate'")
    if live and start is not None:
        raise click.UsageError("--live starts now; drop --start")
    now_ns = time.time_ns()
    if live:
        start_ns = now_ns
    elif start is not None:
        start_ns = parse_time(start)
    else:
        start_ns = now_ns - int(seconds * NS_PER_S)
    try:
        chosen = [incident_from_spec(spec, start_ns) for spec in incidents]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--incident'") from None
    generator = Generator(seed=seed, start_ns=start_ns, sessions_per_hour=rate, agent_version=agent_version,
                          incidents=chosen)
    sessions = generator.sessions(until_ns=start_ns + int(seconds * NS_PER_S))
    try:
        result = send(sessions, url, api_key=api_key, concurrency=concurrency, pace="live" if live else "max",
                      per_request=per_request)
        flushed = flush_server(url, api_key=api_key) if flush else None
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(_summary(result, flushed))


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@url_option
@api_key_option
@click.option("--start", default=None,
              help="Event time of the first session, e.g. 2026-01-01T00:00:00Z [default: 24 hours ago].")
@flush_option
def import_command(path: str, url: str, api_key: str | None, start: str | None, flush: bool) -> None:
    """Send recorded conversations (OpenAI messages format, e.g. tau-bench) as OTLP sessions.

    Outcomes (rewards) in the file are never sent; reports join them by session id.
    """
    from agentwatch.traffic import flush as flush_server
    from agentwatch.traffic import import_sessions, send

    start_ns = parse_time(start) if start is not None else time.time_ns() - 86400 * NS_PER_S
    try:
        result = send(import_sessions(path, start_ns), url, api_key=api_key)
        flushed = flush_server(url, api_key=api_key) if flush else None
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(_summary(result, flushed))
