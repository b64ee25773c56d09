"""Calibration runs: an evaluator version against the labels of a dataset version, or of production.

A **dataset run** re-runs the pinned (or named) evaluator version on every
case of a dataset version that expects a verdict of it (``pass`` or
``fail``; ``edge`` cases are left out), and compares::

    run = calibrate(engine, project_id, catalogue, "faithfulness", "support-regressions", 3)
    run["metrics"]["kappa"], run["metrics"]["confusion"], run["metrics"]["recommended_threshold"]

A **labels run** compares the stored scores of an evaluator version with the
human labels given for them over the calibration window; it is what a new
label triggers, and what the monitor's ``calibration`` alert cites.

Both are stored in ``calibration_runs`` and the latest one is stamped on the
evaluator version (``GET /api/v1/evaluators`` shows it as ``calibration``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from agentwatch.errors import BadRequest, NotFound
from agentwatch.evaluate.base import EvalResult, Evaluator
from agentwatch.evaluate.build import build, resolve_function
from agentwatch.evaluate.catalogue import TRANSPORT_PARAMS, Catalogue, EvaluatorSpec
from agentwatch.feedback import agreement
from agentwatch.feedback.datasets import read_version
from agentwatch.feedback.snapshot import view_of
from agentwatch.store import models as m
from agentwatch.store.evaluations import GLOBAL_PROJECT
from agentwatch.store.models import utcnow

#: Label verdicts and what they say about the evaluator's score.
AGREE = ("correct", "real_failure")
DISAGREE = ("false_positive", "false_negative")
#: Cases evaluated at once in a run (judges are called concurrently).
CONCURRENCY = 8


class PinError(BadRequest):
    """A pinned evaluator version that cannot be rebuilt here."""

    code = "pin_error"


def pinned_spec(name: str, pin: Mapping[str, Any], catalogue: Catalogue | None = None) -> EvaluatorSpec:
    """The EvaluatorSpec of a pin, checked to hash to the pinned version.

    A judge's transport (endpoint, key variable, timeouts) is not part of its
    version, so it comes from the catalogue's evaluator of the same name. A
    Python evaluator's function must be importable with the same source.
    """
    kind = pin.get("kind")
    params = dict(pin.get("params") or {})
    current = catalogue.by_name(name) if catalogue else None
    if kind == "llm" and current is not None and current.kind == "llm":
        params.update({k: v for k, v in current.params.items() if k in TRANSPORT_PARAMS})
    source = None
    function = pin.get("function")
    if kind == "python":
        if not isinstance(function, str):
            raise PinError(f"evaluator {name!r}: the pin names no function")
        try:
            func = resolve_function(function)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported with the pin
            raise PinError(f"evaluator {name!r}: cannot import {function}: {exc}") from None
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            source = repr(getattr(func, "__code__", func))
    spec = EvaluatorSpec(
        name=name, kind=str(kind), params=params, rule=pin.get("rule"), function=function,
        threshold=pin.get("threshold"), direction=str(pin.get("direction") or "higher_is_better"), source=source,
        dataset_version=current.dataset_version if current else None, owner=current.owner if current else None)
    if spec.version != pin.get("version"):
        changed = " (the Python function's source changed)" if kind == "python" else ""
        raise PinError(f"evaluator {name!r}: the definition here hashes to version {spec.version}, the dataset pins "
                       f"{pin.get('version')}{changed}")
    return spec


def stored_pin(conn: Connection, name: str, version: str) -> dict[str, Any]:
    ev = m.evaluators.c
    row = conn.execute(select(ev.spec).where(ev.project_id == GLOBAL_PROJECT, ev.name == name,
                                             ev.version == version)).first()
    if row is None:
        raise NotFound(f"evaluator {name!r} version {version} is not in the evaluator registry")
    return {"version": version, **dict(row.spec)}


async def evaluate_all(evaluator: Evaluator, views: list[Any], concurrency: int = CONCURRENCY) -> list[EvalResult]:
    gate = asyncio.Semaphore(concurrency)

    async def one(view: Any) -> EvalResult:
        async with gate:
            try:
                return await evaluator.evaluate(view)
            except Exception as exc:  # noqa: BLE001 - a failing evaluator is an evaluation error
                return EvalResult.failure(f"{type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(one(v) for v in views)))


def compare(spec: EvaluatorSpec, items: Sequence[tuple[str, Mapping[str, Any], EvalResult | Mapping[str, Any]]], *,
            target_fnr: float | None = 0.05, target_fpr: float | None = None,
            resamples: int = agreement.BOOTSTRAP_RESAMPLES) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and disagreements of (case id, expectation, result) triples.

    An expectation is ``{"verdict": pass|fail, "score"?}``; a result an
    EvalResult or a stored score row (``status``, ``score``, ``passed``, ``reason``).
    """
    human_fail: list[bool] = []
    flagged: list[bool] = []
    scores: list[float] = []
    expected_scores: list[float] = []
    got_scores: list[float] = []
    disagreements: list[dict[str, Any]] = []
    errors = 0
    for case_id, expected, result in items:
        status = result.status if isinstance(result, EvalResult) else result["status"]
        score = result.score if isinstance(result, EvalResult) else result["score"]
        reason = result.reason if isinstance(result, EvalResult) else result.get("reason")
        if status != "ok" or score is None:
            errors += 1
            disagreements.append({"case_id": case_id, "expected": expected["verdict"], "score": None, "passed": None,
                                  "error": result.error if isinstance(result, EvalResult) else result.get("error")})
            continue
        passed = spec.passed(score)
        if passed is None:
            raise BadRequest(f"evaluator {spec.name!r} has no threshold: its scores have no verdict to compare")
        fail = expected["verdict"] == "fail"
        human_fail.append(fail)
        flagged.append(not passed)
        scores.append(float(score))
        if expected.get("score") is not None:
            expected_scores.append(float(expected["score"]))
            got_scores.append(float(score))
        if fail == passed:
            disagreements.append({"case_id": case_id, "expected": expected["verdict"], "score": score,
                                  "passed": passed, "reason": reason,
                                  "kind": "false_negative" if fail else "false_positive"})
    metrics = agreement.binary_metrics(human_fail, flagged, intervals=True, resamples=resamples)
    metrics["errors"] = errors
    metrics["threshold"] = spec.threshold
    metrics["direction"] = spec.direction
    if expected_scores:
        metrics["scores"] = agreement.score_metrics(expected_scores, got_scores, intervals=True, resamples=resamples)
    metrics["recommended_threshold"] = agreement.recommend_threshold(
        scores, human_fail, direction=spec.direction, target_fnr=target_fnr, target_fpr=target_fpr)
    return metrics, disagreements


def calibrate(engine: Engine, project_id: int, catalogue: Catalogue, evaluator: str, dataset: str,
              dataset_version: int | None = None, *, evaluator_version: str | None = None,
              target_fnr: float | None = 0.05, target_fpr: float | None = None) -> dict[str, Any]:
    """Run an evaluator version (the dataset's pin, or the one named) on a dataset version; store the run."""
    with engine.connect() as conn:
        _, version_row, cases = read_version(conn, project_id, dataset, dataset_version)
        pins = version_row["pins"]
        if evaluator_version is None:
            if evaluator in pins:
                pin = pins[evaluator]
            else:
                current = catalogue.by_name(evaluator)
                if current is None:
                    raise NotFound(f"evaluator {evaluator!r} is neither pinned by {dataset}@{version_row['version']} "
                                   "nor in the catalogue")
                pin = stored_pin(conn, evaluator, current.version)
        else:
            pin = stored_pin(conn, evaluator, evaluator_version)
    spec = pinned_spec(evaluator, pin, catalogue)
    chosen = [c for c in cases if (c["expected"].get(evaluator) or {}).get("verdict") in ("pass", "fail")]
    if not chosen:
        raise BadRequest(f"no case of {dataset}@{version_row['version']} expects a pass or fail of {evaluator}")
    built = build(spec)
    views = [view_of(c, c["case_id"]) for c in chosen]
    results = asyncio.run(evaluate_all(built, views))
    metrics, disagreements = compare(spec, [(c["case_id"], c["expected"][evaluator], r)
                                            for c, r in zip(chosen, results, strict=True)],
                                     target_fnr=target_fnr, target_fpr=target_fpr)
    with engine.begin() as conn:
        return store_run(conn, project_id, spec.name, spec.version, "dataset", metrics, disagreements,
                         dataset=dataset, dataset_version=int(version_row["version"]))


def labels_run(conn: Connection, project_id: int, catalogue: Catalogue, evaluator: str, version: str, *,
               since_ns: int | None = None, until_ns: int | None = None) -> dict[str, Any] | None:
    """Agreement of an evaluator version's stored scores with their labels (``correct``... ``false_negative``).

    The latest label of each session counts; ``edge_case`` is left out. Stored
    as a ``labels`` run; None when nothing is labelled.
    """
    lb, sc = m.labels.c, m.scores.c
    query = (select(lb.id, lb.session_id, lb.verdict, lb.expected_score, sc.status, sc.score, sc.passed, sc.reason,
                    sc.threshold, sc.direction)
             .select_from(m.labels.join(m.scores, (sc.project_id == lb.project_id) & (sc.session_id == lb.session_id)
                                        & (sc.evaluator == lb.evaluator)
                                        & (sc.evaluator_version == lb.evaluator_version) & (sc.shadow.is_(False))))
             .where(lb.project_id == project_id, lb.evaluator == evaluator, lb.evaluator_version == version,
                    lb.verdict.in_(AGREE + DISAGREE)).order_by(lb.id))
    if since_ns is not None:
        query = query.where(lb.event_time_ns >= since_ns)
    if until_ns is not None:
        query = query.where(lb.event_time_ns < until_ns)
    latest: dict[str, Any] = {}
    for row in conn.execute(query):
        latest[row.session_id] = row
    if not latest:
        return None
    first = next(iter(latest.values()))
    current = catalogue.by_name(evaluator)
    spec = EvaluatorSpec(name=evaluator, kind=current.kind if current else "rule", threshold=first.threshold,
                         direction=first.direction)
    items = []
    for session_id, row in latest.items():
        if row.passed is None and row.status == "ok":
            continue
        # What the human says the truth is, from the label and the score's own verdict.
        truth_fail = row.verdict in ("real_failure", "false_negative") or (
            row.verdict == "correct" and row.passed is False)
        expected: dict[str, Any] = {"verdict": "fail" if truth_fail else "pass"}
        if row.expected_score is not None:
            expected["score"] = row.expected_score
        items.append((session_id, expected, {"status": row.status, "score": row.score, "passed": row.passed,
                                             "reason": row.reason}))
    if not items:
        return None
    # A labels run happens after every label: a smaller bootstrap keeps it quick.
    metrics, disagreements = compare(spec, items, resamples=999)
    return store_run(conn, project_id, evaluator, version, "labels", metrics, disagreements)


def store_run(conn: Connection, project_id: int, evaluator: str, version: str, source: str, metrics: dict[str, Any],
              disagreements: list[dict[str, Any]], *, dataset: str | None = None,
              dataset_version: int | None = None) -> dict[str, Any]:
    created_at = utcnow()
    row: dict[str, Any] = {
        "project_id": project_id, "evaluator": evaluator, "evaluator_version": version, "source": source,
        "dataset": dataset, "dataset_version": dataset_version, "n": int(metrics["n"]), "metrics": metrics,
        "disagreements": disagreements, "created_at": created_at}
    row["id"] = int(conn.execute(m.calibration_runs.insert().values(**row)).inserted_primary_key[0])  # type: ignore[index]
    ev = m.evaluators.c
    conn.execute(update(m.evaluators).where(ev.name == evaluator, ev.version == version).values(calibration={
        "run_id": row["id"], "source": source, "dataset": dataset, "dataset_version": dataset_version,
        "n": row["n"], "accuracy": metrics["accuracy"], "kappa": metrics["kappa"],
        "recommended_threshold": (metrics.get("recommended_threshold") or {}).get("threshold"),
        "created_at": created_at.isoformat()}))
    return row


def list_runs(conn: Connection, project_id: int, *, evaluator: str | None = None, evaluator_version: str | None = None,
              dataset: str | None = None, source: str | None = None, limit: int = 100,
              before_id: int | None = None) -> list[dict[str, Any]]:
    c = m.calibration_runs.c
    query = select(m.calibration_runs).where(c.project_id == project_id)
    for column, value in ((c.evaluator, evaluator), (c.evaluator_version, evaluator_version), (c.dataset, dataset),
                          (c.source, source)):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(c.id < before_id)
    return [dict(r) for r in conn.execute(query.order_by(c.id.desc()).limit(limit)).mappings()]


def latest_run(conn: Connection, project_id: int, evaluator: str, version: str,
               source: str | None = None) -> dict[str, Any] | None:
    runs = list_runs(conn, project_id, evaluator=evaluator, evaluator_version=version, source=source, limit=1)
    return runs[0] if runs else None
