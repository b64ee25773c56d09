"""``agentwatch demo``: a server fed by a simulated support agent, with a live log of its alerts.

It starts the server (SQLite in ``./agentwatch-demo.db``, recreated at each
start, and the example configuration ``examples/support-agent/agentwatch.yaml``),
sends ``--days`` of history as fast as the server takes them, then live traffic
through the OpenTelemetry SDK, and prints one line per alert. Ctrl-C stops it::

    agentwatch demo                                   # the showcase: two incidents, two kinds of alert
    agentwatch demo --scenario latency_regression     # one incident (list: agentwatch demo --help)
    agentwatch serve --config examples/support-agent/agentwatch.yaml &
    agentwatch demo --no-server --url http://127.0.0.1:4318

No network beyond loopback and no API key are needed. The configuration's LLM
judges run only with ``--judge-base-url`` (or ``AGENTWATCH_JUDGE_BASE_URL``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from agentwatch.traffic.demo import SCENARIOS, AlertLog, Feeder, wait_ready

DEMO_DATABASE = "sqlite:///agentwatch-demo.db"
JUDGE_ENV = "AGENTWATCH_JUDGE_BASE_URL"


def example_config() -> str:
    """The path of the packaged example configuration (``examples/support-agent/agentwatch.yaml``)."""
    return str(resources.files("agentwatch.traffic").joinpath("support-agent.yaml"))


def _fresh_sqlite(database_url: str) -> None:
    """Remove the demo's SQLite file (and its WAL) so that each demo starts empty."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        Path(url.database + suffix).unlink(missing_ok=True)


@click.command("demo")
@click.option("--scenario", default="showcase", show_default=True, type=click.Choice(list(SCENARIOS)),
              help="Which incidents to switch on (docs/demo.md describes each).")
@click.option("--days", default=2.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Days of history sent at once before live traffic.")
@click.option("--rate", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Mean sessions per hour (the daily cycle runs from 0.3x at night to 1.6x at peak).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds of event time per second of live traffic (10: ten times real time).")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same traffic.")
@click.option("--no-server", is_flag=True, help="Feed a server that already runs at --url instead of starting one.")
@click.option("--url", default="http://127.0.0.1:4318", show_default=True, help="The server to feed (--no-server).")
@click.option("--api-key", default=None, envvar="AGENTWATCH_API_KEY", help="API key, when that server has keys.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the demo's server listens on.")
@click.option("--port", default=4318, show_default=True, type=int, help="OTLP/HTTP, API and UI port.")
@click.option("--grpc-port", default=4317, show_default=True, type=int, help="OTLP/gRPC port; 0 disables it.")
@click.option("--config", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Config file [default: the example, examples/support-agent/agentwatch.yaml].")
@click.option("--database-url", default=DEMO_DATABASE, show_default=True,
              help="The demo's store; a SQLite file is recreated at each start.")
@click.option("--judge-base-url", default=None, envvar=JUDGE_ENV,
              help="An OpenAI-compatible endpoint (e.g. http://127.0.0.1:11434/v1) for the configuration's LLM "
                   "judges. Without it they are off.")
@click.option("--duration", default=None, type=click.FloatRange(min=1),
              help="Stop after this many seconds [default: run until Ctrl-C].")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="The server's log level.")
def demo(scenario: str, days: float, rate: float, speed: float, seed: int, no_server: bool, url: str,
         api_key: str | None, host: str, port: int, grpc_port: int, config: str | None, database_url: str,
         judge_base_url: str | None, duration: float | None, log_level: str) -> None:
    """A server fed by a simulated support agent with timed incidents; prints its alerts as they fire."""
    chosen = SCENARIOS[scenario]
    if judge_base_url:
        os.environ[JUDGE_ENV] = judge_base_url
    began = time.monotonic()

    def echo(line: str) -> None:
        click.echo(line)

    def start(server_url: str, server: Any | None) -> tuple[Any, AlertLog]:
        click.echo(f"agentwatch demo, scenario {chosen.name}: {chosen.summary}")
        click.echo(f"  dashboard     {server_url}/")
        click.echo(f"  alerts        {server_url}/api/v1/alerts")
        click.echo(f"  review queue  {server_url}/api/v1/review")
        click.echo(f"  OTLP/HTTP     {server_url}  (point an OpenTelemetry SDK's exporter here)")
        click.echo(f"sending {days:g} days of history at {rate:g} sessions/h, then live traffic; "
                   f"{'stops after ' + format(duration, 'g') + 's' if duration else 'Ctrl-C stops'}", nl=True)
        alerts = AlertLog(server_url, api_key=api_key, echo=echo)
        args = (server_url, chosen.name, days, rate, seed, speed, api_key)
        feeder: Any
        if server is None:
            feeder = threading.Thread(target=_feed, args=args, name="agentwatch-demo-feed", daemon=True)
        else:
            # The generator is pure Python: in a process of its own it does not hold the server's GIL.
            feeder = multiprocessing.get_context("spawn").Process(target=_feed, args=args, name="agentwatch-demo-feed",
                                                                  daemon=True)
        feeder.start()
        threading.Thread(target=alerts.run, name="agentwatch-demo-alerts", daemon=True).start()
        if duration is not None and server is not None:
            def stop_later() -> None:
                time.sleep(max(0.0, duration - (time.monotonic() - began)))
                server.should_exit = True
            threading.Thread(target=stop_later, name="agentwatch-demo-timer", daemon=True).start()
        return feeder, alerts

    running: list[tuple[Feeder, AlertLog]] = []
    if no_server:
        feeder, alerts = start(url.rstrip("/"), None)
        running.append((feeder, alerts))
        try:
            while duration is None or time.monotonic() - began < duration:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    else:
        from agentwatch.cli import run_server

        _fresh_sqlite(database_url)

        def on_started(server_url: str, store: Any, server: Any) -> None:
            if log_level in ("warning", "error"):
                # The example's log notifier would repeat, as a JSON log line, each alert the log below prints.
                logging.getLogger("agentwatch.alert").setLevel(logging.ERROR)
            if store.active_keys() and api_key is None:
                click.echo("the demo's database has API keys: pass --api-key, or the demo traffic is refused")
            running.append(start(server_url, server))

        try:
            run_server(host, port, grpc_port, config or example_config(), database_url, False, log_level,
                       on_started=on_started)
        except KeyboardInterrupt:
            pass  # the server stopped on Ctrl-C; uvicorn raises it again once it has shut down
    for feeder, alerts in running:
        alerts.stop.set()
        if isinstance(feeder, multiprocessing.process.BaseProcess) and feeder.is_alive():
            feeder.terminate()
            feeder.join(5)
        kinds = ", ".join(sorted(alerts.kinds)) or "none"
        click.echo(f"demo stopped after {time.monotonic() - began:.0f}s; alert kinds seen: {kinds}")


def _feed(url: str, scenario: str, days: float, rate: float, seed: int, speed: float, api_key: str | None) -> None:
    """The feeder (in a child process when the demo runs the server, started with SIGINT ignored: the
    demo ends it): wait for the server, then send."""
    feeder = Feeder(url, SCENARIOS[scenario], days=days, rate=rate, seed=seed, speed=speed, api_key=api_key,
                    echo=lambda line: print(line, flush=True))
    if not wait_ready(url, 60):
        print(f"no server answers at {url}/readyz", flush=True)
        return
    try:
        feeder.run()
    except KeyboardInterrupt:
        pass
