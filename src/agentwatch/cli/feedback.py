"""``agentwatch label``, ``dataset``, ``calibrate`` and ``gate``: the feedback loop from a terminal.

They work on the store directly (``--config``, ``--database-url``), like
``erase`` and ``eval backfill``; ``gate`` also reads a dataset exported to a
file, so CI needs no database::

    agentwatch label conv-42 --evaluator refund_policy --verdict real_failure --author maria
    agentwatch dataset add support-regressions --from-labels
    agentwatch dataset export support-regressions@2 > tests/support-regressions.jsonl
    agentwatch calibrate --evaluator faithfulness --dataset support-regressions
    agentwatch gate --dataset tests/support-regressions.jsonl --candidate run.jsonl --junit gate.xml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from agentwatch.errors import AgentwatchError

config_option = click.option("--config", type=click.Path(dir_okay=False), default=None,
                             help="Config file (default: ./agentwatch.yaml when present).")
database_option = click.option("--database-url", default=None, envvar="AGENTWATCH_DATABASE_URL",
                               help="sqlite:///path.db (default ./agentwatch.db) or postgresql://user@host/db.")
project_option = click.option("--project", default=None, help="Project (default: the config's).")


def _pipeline(config: str | None, database_url: str | None) -> Any:
    from agentwatch.cli import _settings, _store
    from agentwatch.pipeline import Pipeline

    settings = _settings(config, database_url)
    try:
        return Pipeline(settings, _store(settings))
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc


def _project(pipeline: Any, project: str | None) -> int:
    return int(pipeline.store.ensure_project(project or pipeline.settings.project))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.command("label")
@click.argument("session_id")
@click.option("--evaluator", required=True, help="The dimension labelled.")
@click.option("--verdict", required=True,
              type=click.Choice(["correct", "real_failure", "false_positive", "false_negative", "edge_case"]))
@click.option("--expected-score", type=float, default=None, help="The score it should have had, in [0, 1].")
@click.option("--note", default=None)
@click.option("--author", default=None, help="Who labels (default: $USER).")
@project_option
@config_option
@database_option
def label_command(session_id: str, evaluator: str, verdict: str, expected_score: float | None, note: str | None,
                  author: str | None, project: str | None, config: str | None, database_url: str | None) -> None:
    """Label a session's score of one evaluator; prints the label and the calibration it re-ran."""
    import os

    from agentwatch.api.feedback import label_json, run_json
    from agentwatch.feedback import calibration
    from agentwatch.store import labels

    pipeline = _pipeline(config, database_url)
    project_id = _project(pipeline, project)
    try:
        fields = labels.validate({"session_id": session_id, "evaluator": evaluator, "verdict": verdict,
                                  "expected_score": expected_score, "note": note,
                                  "author": author or os.environ.get("USER")})
        stored = labels.add_label(pipeline.store.engine, project_id, fields)
        out = label_json(stored)
        if stored["evaluator_version"]:
            with pipeline.store.engine.begin() as conn:
                window = pipeline.monitor_config.calibration.window_s
                run = calibration.labels_run(conn, project_id, pipeline.catalogue, evaluator,
                                             stored["evaluator_version"],
                                             since_ns=stored["event_time_ns"] - int(window * 1e9))
            out["calibration"] = run_json(run) if run else None
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    _echo_json(out)


@click.group("dataset")
def dataset_group() -> None:
    """Versioned datasets of labelled cases."""


@dataset_group.command("list")
@project_option
@config_option
@database_option
def dataset_list(project: str | None, config: str | None, database_url: str | None) -> None:
    """The datasets with their latest version."""
    from agentwatch.feedback import datasets

    pipeline = _pipeline(config, database_url)
    with pipeline.store.engine.connect() as conn:
        rows = datasets.list_datasets(conn, _project(pipeline, project))
    for row in rows:
        click.echo(f"{row['name']}\tversion {row['latest'] or '-'}\t{row['case_count']} cases")


@dataset_group.command("add")
@click.argument("name")
@click.option("--session", "sessions", multiple=True, help="A labelled session to add (repeatable).")
@click.option("--from-labels", "from_labels", is_flag=True,
              help="Add every session labelled real_failure or false_positive (or --verdict).")
@click.option("--verdict", "verdicts", multiple=True, help="With --from-labels: the label verdicts to take.")
@click.option("--evaluator", default=None, help="Only this dimension's labels and expectations.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Cases as JSON lines (an export or case objects), or recorded conversations "
                   "(a JSON list of {task_id, traj: [messages]}, as tau-bench).")
@click.option("--expected", "expected", multiple=True, metavar="EVALUATOR=pass|fail",
              help="With conversations: the verdict every one should get (repeatable).")
@click.option("--reward-dimension", default=None, help="With conversations: reward 1 passes this dimension.")
@click.option("--author", default=None)
@click.option("--note", default=None)
@project_option
@config_option
@database_option
def dataset_add(name: str, sessions: tuple[str, ...], from_labels: bool, verdicts: tuple[str, ...],
                evaluator: str | None, path: str | None, expected: tuple[str, ...], reward_dimension: str | None,
                author: str | None, note: str | None, project: str | None, config: str | None,
                database_url: str | None) -> None:
    """Add cases to a dataset: a new version (made first if the dataset is new)."""
    from agentwatch.feedback import datasets

    body: dict[str, Any] = {"author": author, "note": note}
    if sessions:
        body["sessions"] = [{"session_id": s, **({"evaluators": [evaluator]} if evaluator else {})} for s in sessions]
    if from_labels:
        body["from_labels"] = {"verdicts": list(verdicts) or None, "evaluator": evaluator}
    if path:
        text = Path(path).read_text(encoding="utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            body["conversations"] = json.loads(text)
            pairs = {}
            for item in expected:
                key, _, value = item.partition("=")
                if value not in ("pass", "fail"):
                    raise click.BadParameter(f"{item!r}: expected EVALUATOR=pass or EVALUATOR=fail",
                                             param_hint="'--expected'")
                pairs[key] = value
            body["expected"] = pairs or None
            body["reward_dimension"] = reward_dimension
        else:
            try:
                _, body["cases"] = datasets.read_lines(text, path)
            except AgentwatchError as exc:
                raise click.ClickException(exc.message) from exc
    pipeline = _pipeline(config, database_url)
    project_id = _project(pipeline, project)
    try:
        result = datasets.add_from_request(pipeline.store.engine, pipeline.scorer.load, pipeline.catalogue,
                                           pipeline.options, project_id, pipeline.store.project_name(project_id),
                                           name, body)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    state = "made" if result["created"] else "unchanged at"
    click.echo(f"{name}: {state} version {result['version']} ({result['case_count']} cases; added "
               f"{len(result['added'])}, replaced {len(result['replaced'])})")


@dataset_group.command("export")
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File (default: stdout).")
@project_option
@config_option
@database_option
def dataset_export(ref: str, output: str | None, project: str | None, config: str | None,
                   database_url: str | None) -> None:
    """A dataset version as JSON lines (what ``gate --dataset FILE`` reads)."""
    from agentwatch.feedback import datasets

    pipeline = _pipeline(config, database_url)
    try:
        name, version = datasets.parse_ref(ref)
        with pipeline.store.engine.connect() as conn:
            dataset, row, cases = datasets.read_version(conn, _project(pipeline, project), name, version)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    text = "".join(line + "\n" for line in datasets.export_lines(dataset, row, cases))
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {name}@{row['version']} ({row['case_count']} cases) to {output}", err=True)
    else:
        sys.stdout.write(text)


@click.command("calibrate")
@click.option("--evaluator", required=True)
@click.option("--dataset", "ref", required=True, metavar="NAME[@VERSION]")
@click.option("--evaluator-version", default=None, help="Default: the dataset's pin, else the current version.")
@click.option("--target-fnr", type=float, default=None, help="Recommend a threshold for this miss rate (default 0.05).")
@click.option("--target-fpr", type=float, default=None, help="Or for this false-positive rate.")
@project_option
@config_option
@database_option
def calibrate_command(evaluator: str, ref: str, evaluator_version: str | None, target_fnr: float | None,
                      target_fpr: float | None, project: str | None, config: str | None,
                      database_url: str | None) -> None:
    """Run an evaluator version on a dataset version; print and store its agreement with the labels."""
    from agentwatch.api.feedback import run_json
    from agentwatch.feedback import calibration, datasets

    pipeline = _pipeline(config, database_url)
    try:
        name, version = datasets.parse_ref(ref)
        run = calibration.calibrate(pipeline.store.engine, _project(pipeline, project), pipeline.catalogue,
                                    evaluator, name, version, evaluator_version=evaluator_version,
                                    target_fnr=None if target_fpr is not None else (target_fnr or 0.05),
                                    target_fpr=target_fpr)
    except AgentwatchError as exc:
        raise click.ClickException(exc.message) from exc
    _echo_json(run_json(run))


@click.command("gate")
@click.option("--dataset", "ref", required=True, metavar="NAME[@VERSION]|FILE",
              help="A dataset in the store, or a file that `dataset export` wrote.")
@click.option("--candidate", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The candidate agent's sessions: JSON lines of cases or messages, or OTLP (JSON lines or "
                   "protobuf).")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary here.")
@click.option("--floor", "floors", multiple=True, metavar="EVALUATOR=RATE", help="A pass-rate floor (repeatable).")
@project_option
@config_option
@database_option
def gate_command(ref: str, candidate: str, junit: str | None, summary_path: str | None, floors: tuple[str, ...],
                 project: str | None, config: str | None, database_url: str | None) -> None:
    """Score a candidate's outputs for a dataset's cases with the pinned evaluators; exit 1 on a regression."""
    from agentwatch.evaluate.catalogue import load_catalogue
    from agentwatch.feedback.gate import load_candidates, load_dataset, run_gate
    from agentwatch.settings import load_settings

    parsed: dict[str, float] = {}
    for item in floors:
        key, _, value = item.partition("=")
        try:
            parsed[key] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected EVALUATOR=RATE", param_hint="'--floor'") from None
        if not key or not 0.0 <= parsed[key] <= 1.0:
            raise click.BadParameter(f"{item!r}: expected EVALUATOR=RATE with RATE in [0, 1]",
                                     param_hint="'--floor'")
    try:
        settings = load_settings(config, database_url=database_url)
        catalogue = load_catalogue(settings.sections, settings.config_path)
        if Path(ref).is_file():
            dataset = load_dataset(ref)
        else:
            pipeline = _pipeline(config, database_url)
            dataset = load_dataset(ref, engine=pipeline.store.engine, project_id=_project(pipeline, project))
        result = run_gate(dataset, load_candidates(candidate), candidate=candidate, catalogue=catalogue,
                          floors=parsed)
    except (AgentwatchError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from exc
    text = result.summary()
    click.echo(text)
    if summary_path:
        Path(summary_path).write_text(text + "\n", encoding="utf-8")
    if junit:
        Path(junit).write_text(result.junit_xml(), encoding="utf-8")
    if not result.passed:
        sys.exit(1)


COMMANDS = (label_command, dataset_group, calibrate_command, gate_command)
