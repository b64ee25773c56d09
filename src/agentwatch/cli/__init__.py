"""The ``agentwatch`` command: serve, demo, migrate, keys, eval, erase, label, dataset, calibrate, gate, version."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from dataclasses import replace
from typing import Any, Callable

import click

from agentwatch import __version__
from agentwatch.errors import AgentwatchError
from agentwatch.settings import Settings, load_settings

logger = logging.getLogger("agentwatch")


def _settings(config: str | None, database_url: str | None) -> Settings:
    try:
        return load_settings(config, database_url=database_url)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc


def _store(settings: Settings) -> Any:
    from agentwatch.store.store import Store

    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    store.migrate()
    return store


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


config_option = click.option("--config", type=click.Path(dir_okay=False), default=None,
                             help="Config file (default: ./agentwatch.yaml when present).")
database_option = click.option("--database-url", default=None, envvar="AGENTWATCH_DATABASE_URL",
                               help="sqlite:///path.db (default ./agentwatch.db) or postgresql://user@host/db.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """agentwatch: monitor AI agents in production."""


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@main.command()
@config_option
@database_option
def migrate(config: str | None, database_url: str | None) -> None:
    """Apply database migrations."""
    settings = _settings(config, database_url)
    try:
        revision = _store(settings).migrate()
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"schema at revision {revision}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4318, show_default=True, type=int, help="OTLP/HTTP, API and UI port.")
@click.option("--grpc-port", default=4317, show_default=True, type=int, help="OTLP/gRPC port; 0 disables it.")
@config_option
@database_option
@click.option("--insecure", is_flag=True, help="Listen beyond loopback without API keys.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--role", default="all", show_default=True,
              type=click.Choice(["all", "ingest", "worker", "monitor", "ui"]),
              help="The stages this process runs; roles other than all share a PostgreSQL database.")
def serve(host: str, port: int, grpc_port: int, config: str | None, database_url: str | None, insecure: bool,
          log_level: str, role: str) -> None:
    """Run the server: every stage in one process, or one role of several sharing PostgreSQL."""
    run_server(host, port, grpc_port, config, database_url, insecure, log_level, role=role)


def run_server(host: str, port: int, grpc_port: int, config: str | None, database_url: str | None, insecure: bool,
               log_level: str, *, on_started: Callable[[str, Any, Any], None] | None = None,
               role: str = "all") -> None:
    """Serve until Ctrl-C (or until ``server.should_exit`` is set); ``on_started(url, store, server)`` runs
    just before the server starts listening (``agentwatch demo`` starts its feeder there)."""
    import uvicorn

    from agentwatch.api.app import create_app
    from agentwatch.pipeline import Pipeline

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = _settings(config, database_url)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    if settings.public_url is None:
        # Alert links point at this server unless a public URL is configured.
        settings = replace(settings, public_url=f"http://{shown}:{port}")
    try:
        store = _store(settings)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    if not is_loopback(host) and not insecure and not store.active_keys():
        raise click.ClickException(
            f"refusing to listen on {host} without API keys: create one with 'agentwatch keys create' "
            "or pass --insecure"
        )
    try:
        pipeline = Pipeline(settings, store, role=role)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    app = create_app(settings, pipeline, grpc_host=host, grpc_port=grpc_port or None)
    logger.info("agentwatch %s (role %s): %s on http://%s:%d%s, store %s", __version__, role,
                "OTLP/HTTP and API" if pipeline.ingests else "API", host, port,
                f", OTLP/gRPC on {host}:{grpc_port}" if grpc_port and pipeline.ingests else "",
                _safe_url(settings.database_url))
    if on_started is None:  # the demo prints its own list of addresses
        click.echo(f"agentwatch dashboard: http://{shown}:{port}/")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           http="httptools", loop="uvloop", timeout_graceful_shutdown=10))
    # Child processes started here ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and
    # the server, not each child, decides how they stop (it closes the decode pool; the demo ends its feeder).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if pipeline.ingests and pipeline.settings.decode_processes and pipeline.receiver.pool is None:
            from agentwatch.ingest.receiver import DecodePool

            pipeline.receiver.pool = DecodePool(pipeline.settings.decode_processes, pipeline.options)
        if pipeline.scores and pipeline.settings.evaluation_processes and pipeline.evaluation_processes is None:
            from agentwatch.evaluate.processes import EvaluationProcesses

            pipeline.evaluation_processes = EvaluationProcesses(pipeline.settings.evaluation_processes,
                                                                pipeline.settings)
            pipeline.evaluation_processes.start()
        if on_started is not None:
            on_started(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}", store, server)
    finally:
        signal.signal(signal.SIGINT, previous)
    server.run()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparsable URL)"


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--project", default=None, help="Project the key files data under (default: the config's).")
@click.option("--name", default="default", show_default=True, help="A label for the key.")
@config_option
@database_option
def keys_create(project: str | None, name: str, config: str | None, database_url: str | None) -> None:
    """Create a key; its plaintext is printed once."""
    settings = _settings(config, database_url)
    key, plaintext = _store(settings).create_key(project or settings.project, name)
    click.echo(plaintext)
    click.echo(f"key {key.id} ({key.prefix}...) for project {key.project!r}: store it now, it is not shown again",
               err=True)


@keys.command("list")
@config_option
@database_option
def keys_list(config: str | None, database_url: str | None) -> None:
    """List keys (never their secret)."""
    settings = _settings(config, database_url)
    for key in _store(settings).list_keys():
        state = f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.prefix}...\t{key.project}\t{key.name}\t{state}")


@keys.command("revoke")
@click.argument("key")
@config_option
@database_option
def keys_revoke(key: str, config: str | None, database_url: str | None) -> None:
    """Revoke a key by id or by its prefix."""
    settings = _settings(config, database_url)
    try:
        revoked = _store(settings).revoke_key(key)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"revoked key {revoked.id} ({revoked.prefix}...) of project {revoked.project!r}")


@main.group("eval")
def eval_group() -> None:
    """Re-score stored sessions."""


@eval_group.command("backfill")
@click.option("--evaluator", "name", required=True, help="The evaluator to run, at its current version.")
@click.option("--since", default="7d", show_default=True, help="How far back from the watermark (event time).")
@click.option("--project", default=None, help="Project (default: the config's).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Score here until done, or leave the jobs to the server's workers.")
@config_option
@database_option
def eval_backfill(name: str, since: str, project: str | None, wait: bool, config: str | None,
                  database_url: str | None) -> None:
    """Score retained sessions with an evaluator's current version."""
    import time

    from agentwatch.evaluate.rescore import queue_recent
    from agentwatch.pipeline import Pipeline
    from agentwatch.sessions.lifecycle import Clock
    from agentwatch.settings import parse_duration
    from agentwatch.store import evaluations

    settings = _settings(config, database_url)
    try:
        seconds = parse_duration(since)
        pipeline = Pipeline(settings, _store(settings))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since'") from exc
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    spec = pipeline.catalogue.by_name(name)
    if spec is None or spec.kind == "external":
        known = ", ".join(s.name for s in pipeline.catalogue.scored) or "none configured"
        raise click.ClickException(f"no evaluator {name!r} to run (known: {known})")
    project_id = pipeline.store.ensure_project(project or settings.project)
    evaluations.register_evaluators(pipeline.store.engine, pipeline.catalogue.scored)
    clock = pipeline.sessions.clocks.get(project_id, Clock())
    queued = queue_recent(pipeline.store.engine, project_id, clock.watermark_ns, seconds, name, reason="backfill")
    click.echo(f"queued {queued} sessions for {name} version {spec.version}")
    if not wait or not queued:
        return
    pipeline.worker.start()
    try:
        while evaluations.pending(pipeline.store.engine, project_id, reason="backfill"):
            time.sleep(0.1)
    finally:
        pipeline.worker.stop()
    click.echo(f"scored {pipeline.worker.done} sessions ({pipeline.worker.failed} failed)")


@main.command()
@click.option("--user-id", required=True, help="The user whose sessions, spans, scores and labels to remove.")
@click.option("--project", default=None, help="Project (default: the config's).")
@config_option
@database_option
def erase(user_id: str, project: str | None, config: str | None, database_url: str | None) -> None:
    """Erase one user's data from a project."""
    from sqlalchemy import select

    from agentwatch.store import models as m
    from agentwatch.store.erase import erase_user

    if not user_id.strip():
        raise click.BadParameter("must not be empty", param_hint="'--user-id'")
    settings = _settings(config, database_url)
    name = project or settings.project
    try:
        store = _store(settings)
        with store.engine.connect() as conn:
            project_id = conn.execute(select(m.projects.c.id).where(m.projects.c.name == name)).scalar()
        if project_id is None:
            raise click.ClickException(f"no project {name!r}")
        removed = erase_user(store.engine, int(project_id), user_id)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(" ".join(f"{key}={value}" for key, value in removed.items()))
    click.echo(f"erased user {user_id!r} from project {name!r}", err=True)


def _register_traffic() -> None:
    from agentwatch.cli.demo import demo
    from agentwatch.cli.feedback import COMMANDS
    from agentwatch.cli.traffic import import_command, replay

    main.add_command(replay)
    main.add_command(import_command)
    main.add_command(demo)
    for command in COMMANDS:
        main.add_command(command)


_register_traffic()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
