"""Datasets: named, versioned, immutable sets of labelled cases.

A case is a snapshot of a session (:mod:`~agentwatch.feedback.snapshot`)
with the verdict each dimension (evaluator) should give it::

    {"case_id": "conv-42",
     "source": {"session_id": "conv-42", "project": "default", "end_time": "..."},
     "summary": {...}, "input": "...", "turns": [...], "transcript": "...", "answer": "...",
     "spans": [...],
     "expected": {"refund_policy": {"verdict": "fail", "label": "real_failure", "score": null,
                                    "note": "refund past 30 days", "label_id": 7}}}

A label becomes an expectation: ``real_failure`` and ``false_negative`` say
the session fails the dimension, ``false_positive`` that it passes,
``correct`` that the score's own verdict stands, ``edge_case`` is kept as
``verdict: "edge"`` and counted by neither calibration nor the gate.

Adding cases always makes a new version: the previous version's cases plus
the new ones (a case id given again replaces its case in the new version).
Nothing is ever updated: case rows are written once (content-addressed by
the sha256 of their canonical JSON), a version lists its members, and its
digest covers the members and the evaluator versions it pins. Reading a
version re-checks both, and the database refuses an UPDATE of any of these
tables, so every version stays reproducible.

A version **pins** one version of each evaluator its cases expect verdicts
of (the version that was labelled, with the definition from the evaluator
registry), so a calibration run or the gate re-runs exactly that version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from agentwatch.errors import BadRequest, Conflict, NotFound, StoreError
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.evaluate.session import SessionView
from agentwatch.feedback.snapshot import SnapshotError, snapshot, view_from_messages, view_of
from agentwatch.normalize import NormalizeOptions
from agentwatch.store import models as m
from agentwatch.store.models import utcnow

VERDICT_OF_LABEL = {"real_failure": "fail", "false_negative": "fail", "false_positive": "pass", "edge_case": "edge"}
EXPECTED_VERDICTS = ("pass", "fail", "edge")
#: The label verdicts ``from_labels`` takes by default: what the evaluator should learn from.
DEFAULT_FROM_LABELS = ("real_failure", "false_positive")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class DatasetIntegrityError(StoreError):
    """A stored dataset version no longer matches its digest."""

    code = "dataset_integrity_error"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def version_digest(case_digests: Iterable[str], pins: Mapping[str, Any]) -> str:
    return digest_of({"cases": sorted(case_digests), "pins": pins})


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"name: expected 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit, "
                         f"got {name!r}")
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` (the latest version when none is given)."""
    name, _, version = ref.partition("@")
    check_name(name)
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise BadRequest(f"dataset version: expected a positive whole number after '@', got {version!r}")
    return name, int(version)


# -- datasets ------------------------------------------------------------------


def check_floors(floors: Any) -> dict[str, float]:
    if floors is None:
        return {}
    if not isinstance(floors, Mapping):
        raise BadRequest("floors: expected a mapping of evaluator name to the lowest pass rate the gate accepts")
    out = {}
    for name, value in floors.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise BadRequest(f"floors.{name}: expected a pass rate from 0 to 1, got {value!r}")
        out[str(name)] = float(value)
    return out


def create_dataset(conn: Connection, project_id: int, name: str, description: str | None = None,
                   floors: Mapping[str, float] | None = None) -> dict[str, Any]:
    check_name(name)
    if description is not None and not isinstance(description, str):
        raise BadRequest("description: expected a string")
    row = {"project_id": project_id, "name": name, "description": description, "floors": check_floors(floors),
           "created_at": utcnow()}
    try:
        with conn.begin_nested():
            row["id"] = conn.execute(m.datasets.insert().values(**row)).inserted_primary_key[0]  # type: ignore[index]
    except IntegrityError:
        raise Conflict(f"dataset {name!r} exists already") from None
    return row


def get_dataset(conn: Connection, project_id: int, name: str) -> dict[str, Any]:
    d = m.datasets.c
    row = conn.execute(select(m.datasets).where(d.project_id == project_id, d.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"dataset {name!r} not found")
    return dict(row)


def list_datasets(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    d, v = m.datasets.c, m.dataset_versions.c
    latest = (select(v.dataset_id, func.max(v.version).label("latest"), func.count().label("versions"))
              .group_by(v.dataset_id).subquery())
    rows = conn.execute(
        select(m.datasets, latest.c.latest, latest.c.versions)
        .select_from(m.datasets.outerjoin(latest, latest.c.dataset_id == d.id))
        .where(d.project_id == project_id).order_by(d.created_at.desc(), d.id.desc())).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        item["case_count"] = 0
        if row["latest"]:
            item["case_count"] = conn.execute(select(v.case_count).where(
                v.dataset_id == row["id"], v.version == row["latest"])).scalar() or 0
        out.append(item)
    return out


def versions(conn: Connection, project_id: int, name: str) -> list[dict[str, Any]]:
    dataset = get_dataset(conn, project_id, name)
    v = m.dataset_versions.c
    rows = conn.execute(select(m.dataset_versions).where(v.dataset_id == dataset["id"])
                        .order_by(v.version.desc())).mappings().all()
    return [dict(r) for r in rows]


def _version_row(conn: Connection, dataset_id: int, name: str, version: int | None) -> dict[str, Any]:
    v = m.dataset_versions.c
    query = select(m.dataset_versions).where(v.dataset_id == dataset_id)
    query = query.where(v.version == version) if version is not None else query.order_by(v.version.desc()).limit(1)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"dataset {name!r} has no version {version}" if version is not None
                       else f"dataset {name!r} has no version yet: add cases to make version 1")
    return dict(row)


def read_version(conn: Connection, project_id: int, name: str, version: int | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(dataset, version row, cases in case-id order), after checking every digest."""
    dataset = get_dataset(conn, project_id, name)
    row = _version_row(conn, dataset["id"], name, version)
    c, mb = m.dataset_cases.c, m.dataset_members.c
    members = conn.execute(
        select(c.id, c.case_id, c.digest, c.content)
        .select_from(m.dataset_members.join(m.dataset_cases, c.id == mb.case_row_id))
        .where(mb.version_id == row["id"]).order_by(c.case_id)).mappings().all()
    label = f"dataset {name!r} version {row['version']}"
    for member in members:
        if digest_of(member["content"]) != member["digest"]:
            raise DatasetIntegrityError(f"{label}: case {member['case_id']!r} was changed after it was written")
    digest = version_digest((r["digest"] for r in members), row["pins"])
    if len(members) != row["case_count"] or digest != row["digest"]:
        raise DatasetIntegrityError(f"{label}: its cases or pins are not the ones it was made with "
                                    f"({len(members)} cases found, {row['case_count']} recorded)")
    return dataset, row, [dict(r["content"]) for r in members]


def add_cases(conn: Connection, project_id: int, name: str, cases: list[dict[str, Any]], *,
              pins: Mapping[str, Any], author: str | None = None, note: str | None = None,
              create: bool = True, user_ids: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """A new version: the latest version's cases, with ``cases`` added (or replacing the same case ids)."""
    if not cases:
        raise BadRequest("no cases to add")
    seen: set[str] = set()
    for case in cases:
        check_case(case)
        if case["case_id"] in seen:
            raise BadRequest(f"case {case['case_id']!r} is given twice")
        seen.add(case["case_id"])
    try:
        dataset = get_dataset(conn, project_id, name)
    except NotFound:
        if not create:
            raise
        dataset = create_dataset(conn, project_id, name)
    v, c, mb = m.dataset_versions.c, m.dataset_cases.c, m.dataset_members.c
    previous = None
    members: dict[str, tuple[int, str]] = {}
    old_pins: dict[str, Any] = {}
    latest = conn.execute(select(func.max(v.version)).where(v.dataset_id == dataset["id"])).scalar()
    if latest:
        _, previous, _ = read_version(conn, project_id, name, int(latest))
        old_pins = dict(previous["pins"])
        for row in conn.execute(select(c.id, c.case_id, c.digest)
                                .select_from(m.dataset_members.join(m.dataset_cases, c.id == mb.case_row_id))
                                .where(mb.version_id == previous["id"])):
            members[row.case_id] = (int(row.id), row.digest)
    added: list[str] = []
    replaced: list[str] = []
    unchanged: list[str] = []
    now = utcnow()
    for case in cases:
        digest = digest_of(case)
        current = members.get(case["case_id"])
        if current is not None and current[1] == digest:
            unchanged.append(case["case_id"])
            continue
        row_id = conn.execute(select(c.id).where(c.dataset_id == dataset["id"], c.digest == digest)).scalar()
        if row_id is None:
            source = (case.get("source") or {}).get("session_id")
            row_id = conn.execute(m.dataset_cases.insert().values(
                dataset_id=dataset["id"], case_id=case["case_id"], digest=digest, content=case,
                source_session_id=source, source_user_id=(user_ids or {}).get(case["case_id"]),
                created_at=now)).inserted_primary_key[0]  # type: ignore[index]
        (replaced if current is not None else added).append(case["case_id"])
        members[case["case_id"]] = (int(row_id), digest)
    merged_pins = {**dict(pins), **old_pins}
    if previous is not None and not added and not replaced and merged_pins == old_pins:
        return {"dataset": name, "version": previous["version"], "created": False, "added": [], "replaced": [],
                "unchanged": unchanged, "case_count": previous["case_count"], "digest": previous["digest"]}
    number = int(latest or 0) + 1
    digest = version_digest((d for _, d in members.values()), merged_pins)
    version_id = conn.execute(m.dataset_versions.insert().values(
        dataset_id=dataset["id"], version=number, case_count=len(members), digest=digest, pins=merged_pins,
        author=author, note=note, created_at=now)).inserted_primary_key[0]  # type: ignore[index]
    conn.execute(m.dataset_members.insert(), [{"version_id": version_id, "case_row_id": rid}
                                              for rid, _ in members.values()])
    return {"dataset": name, "version": number, "created": True, "added": added, "replaced": replaced,
            "unchanged": unchanged, "case_count": len(members), "digest": digest}


def check_case(case: Any) -> dict[str, Any]:
    """A case object, checked; BadRequest names the first field that is wrong."""
    if not isinstance(case, dict):
        raise BadRequest("a case must be a JSON object with case_id, spans and expected")
    case_id = case.get("case_id")
    if not isinstance(case_id, str) or not case_id.strip() or len(case_id) > 500:
        raise BadRequest("case_id: required, a non-empty string of at most 500 characters")
    expected = case.get("expected")
    if not isinstance(expected, dict) or not expected:
        raise BadRequest(f"case {case_id!r}: expected: required, the verdict per evaluator, "
                         "e.g. {\"refund_policy\": {\"verdict\": \"fail\"}}")
    for evaluator, value in expected.items():
        if not isinstance(value, dict) or value.get("verdict") not in EXPECTED_VERDICTS:
            raise BadRequest(f"case {case_id!r}: expected.{evaluator}.verdict: expected one of "
                             f"{', '.join(EXPECTED_VERDICTS)}")
        score = value.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not 0.0 <= float(score) <= 1.0):
            raise BadRequest(f"case {case_id!r}: expected.{evaluator}.score: a number in [0, 1], got {score!r}")
    try:
        view_of(case, case_id)
    except SnapshotError as exc:
        raise BadRequest(f"case {case_id!r}: {exc}") from None
    return case


# -- cases from sessions, labels and files ------------------------------------


def expectation(label: Mapping[str, Any], score: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a label says a dimension's verdict should be (None: a ``correct`` label of no usable score)."""
    verdict = VERDICT_OF_LABEL.get(str(label["verdict"]))
    if verdict is None:  # correct: the score's own verdict stands
        if score is None or score.get("passed") is None:
            return None
        verdict = "pass" if score["passed"] else "fail"
    out: dict[str, Any] = {"verdict": verdict, "label": label["verdict"], "label_id": label.get("id")}
    if label.get("expected_score") is not None:
        out["score"] = float(label["expected_score"])
    if label.get("note"):
        out["note"] = label["note"]
    if label.get("author"):
        out["author"] = label["author"]
    return out


def session_case(view: SessionView, project: str, expected: dict[str, Any]) -> dict[str, Any]:
    from agentwatch.timefmt import rfc3339

    return {
        "case_id": view.session_id,
        "source": {"session_id": view.session_id, "project": project, "end_time": rfc3339(view.end_ns)},
        **snapshot(view),
        "expected": expected,
    }


def labelled_cases(engine: Engine, load: Any, project_id: int, project: str, session_ids: list[str], *,
                   evaluators: Iterable[str] | None = None, explicit: Mapping[str, Mapping[str, Any]] | None = None,
                   ) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str | None]]:
    """Cases of stored sessions with expectations from their latest labels (or ``explicit`` ones).

    ``load(project_id, session_id)`` gives a SessionView. Answers the cases,
    the evaluator versions the labels were given for, and the sessions' users.
    """
    lb, sc, se = m.labels.c, m.scores.c, m.sessions.c
    only = set(evaluators) if evaluators else None
    cases: list[dict[str, Any]] = []
    labelled_versions: dict[str, str] = {}
    users: dict[str, str | None] = {}
    with engine.connect() as conn:
        for session_id in session_ids:
            expected: dict[str, Any] = {}
            labels = conn.execute(select(m.labels).where(lb.project_id == project_id, lb.session_id == session_id)
                                  .order_by(lb.created_at, lb.id)).mappings().all()
            for label in labels:  # the latest label of each evaluator wins
                if only is not None and label["evaluator"] not in only:
                    continue
                score = conn.execute(select(sc.passed, sc.score).where(
                    sc.project_id == project_id, sc.session_id == session_id, sc.evaluator == label["evaluator"],
                    sc.shadow.is_(False), sc.status == "ok",
                    *( [sc.evaluator_version == label["evaluator_version"]] if label["evaluator_version"] else []))
                    .order_by(sc.created_at.desc(), sc.id.desc()).limit(1)).mappings().first()
                found = expectation(dict(label), dict(score) if score is not None else None)
                if found is not None:
                    expected[label["evaluator"]] = found
                    if label["evaluator_version"]:
                        labelled_versions.setdefault(label["evaluator"], label["evaluator_version"])
            for evaluator, value in (explicit or {}).get(session_id, {}).items():
                verdict = value.get("verdict") if isinstance(value, Mapping) else value
                if verdict not in EXPECTED_VERDICTS:
                    raise BadRequest(f"session {session_id!r}: expected.{evaluator}: one of "
                                     f"{', '.join(EXPECTED_VERDICTS)}, got {verdict!r}")
                expected[evaluator] = {"verdict": verdict, "label": "explicit"}
            if not expected:
                raise BadRequest(f"session {session_id!r} has no label" + (f" for {', '.join(sorted(only))}"
                                 if only else "") + ": label it first, or give expected verdicts")
            users[session_id] = conn.execute(select(se.user_id).where(
                se.project_id == project_id, se.session_id == session_id)).scalar()
            cases.append(session_case(load(project_id, session_id), project, expected))
    return cases, labelled_versions, users


def sessions_with_labels(engine: Engine, project_id: int, verdicts: Iterable[str], evaluator: str | None = None,
                         limit: int = 1000) -> list[str]:
    """Sessions labelled with any of ``verdicts`` (of ``evaluator`` if given), newest label first."""
    lb = m.labels.c
    query = (select(lb.session_id, func.max(lb.id).label("last"))
             .where(lb.project_id == project_id, lb.verdict.in_(list(verdicts)))
             .group_by(lb.session_id).order_by(func.max(lb.id).desc()).limit(limit))
    if evaluator:
        query = query.where(lb.evaluator == evaluator)
    with engine.connect() as conn:
        return [r.session_id for r in conn.execute(query)]


def pins_for(engine: Engine, catalogue: Catalogue, evaluators: Iterable[str],
             labelled: Mapping[str, str]) -> dict[str, Any]:
    """The pinned definition of each evaluator: the labelled version, else the catalogue's current one."""
    ev = m.evaluators.c
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name in sorted(set(evaluators)):
            version = labelled.get(name)
            spec = catalogue.by_name(name)
            if version is None and spec is not None:
                version = spec.version
            if version is None:
                raise BadRequest(f"evaluator {name!r} is neither in the catalogue nor labelled: nothing to pin")
            stored = conn.execute(select(ev.spec, ev.kind).where(ev.name == name, ev.version == version)
                                  .limit(1)).first()
            if stored is not None:
                definition = dict(stored.spec)
            elif spec is not None and spec.version == version:
                definition = {**spec.content, "threshold": spec.threshold, "direction": spec.direction}
            else:
                raise BadRequest(f"evaluator {name!r} version {version} is not in the evaluator registry")
            out[name] = {"version": version, **definition}
    return out


def cases_from_conversations(records: list[Any], where: str, expected: Mapping[str, str] | None = None,
                             reward_dimension: str | None = None,
                             options: NormalizeOptions | None = None) -> list[dict[str, Any]]:
    """Cases of recorded conversations (tau-bench's format: ``{task_id, trial?, reward?, traj}``).

    Each gets the ``expected`` verdicts given; with ``reward_dimension``, a
    reward of 1 expects that dimension to pass and any other reward to fail.
    """
    from agentwatch.traffic.importer import ImportFormatError, check_messages

    cases = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequest(f"{where}: record {i}: expected an object with task_id and traj (or messages)")
        messages = record.get("traj", record.get("messages"))
        try:
            check_messages(messages, f"{where}: record {i}")
        except ImportFormatError as exc:
            raise BadRequest(exc.message) from None
        case_id = str(record.get("case_id") or f"{record.get('task_id', i)}-{record.get('trial', 0)}")
        verdicts: dict[str, Any] = {k: {"verdict": v, "label": "imported"} for k, v in (expected or {}).items()}
        if reward_dimension:
            reward = record.get("reward")
            if reward is None:
                reward = ((record.get("info") or {}).get("reward_info") or {}).get("reward")
            if reward is None:
                raise BadRequest(f"{where}: record {i} has no reward for {reward_dimension}")
            verdicts[reward_dimension] = {"verdict": "pass" if float(reward) >= 1.0 else "fail",
                                          "label": "imported", "note": f"reward {reward}"}
        try:
            view = view_from_messages(case_id, list(messages or []), options)
        except SnapshotError as exc:
            raise BadRequest(f"{where}: record {i}: {exc}") from None
        cases.append({"case_id": case_id, "source": {"file": where, "record": i}, **snapshot(view),
                      "expected": verdicts})
    return cases


def add_from_request(engine: Engine, load: Any, catalogue: Catalogue, options: NormalizeOptions, project_id: int,
                     project: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Add what a request names: ``sessions``, ``cases``, ``conversations`` and ``from_labels``; a new version."""
    from agentwatch.store import labels
    check_name(name)
    sessions: list[str] = []
    only: dict[str, list[str] | None] = {}
    explicit: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(body.get("sessions") or []):
        if isinstance(entry, str):
            entry = {"session_id": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("session_id"), str):
            raise BadRequest(f"sessions[{i}]: expected a session id or {{session_id, evaluators?, expected?}}")
        sessions.append(entry["session_id"])
        only[entry["session_id"]] = entry.get("evaluators")
        if entry.get("expected") is not None:
            if not isinstance(entry["expected"], dict):
                raise BadRequest(f"sessions[{i}].expected: a mapping of evaluator to pass, fail or edge")
            explicit[entry["session_id"]] = entry["expected"]
    from_labels = body.get("from_labels")
    only_evaluator = None
    if from_labels:
        spec = from_labels if isinstance(from_labels, dict) else {}
        verdicts = spec.get("verdicts") or list(DEFAULT_FROM_LABELS)
        only_evaluator = spec.get("evaluator")
        bad = [v for v in verdicts if v not in labels.VERDICTS]
        if bad:
            raise BadRequest(f"from_labels.verdicts: unknown verdict(s) {', '.join(map(str, bad))}")
        for session_id in sessions_with_labels(engine, project_id, verdicts, only_evaluator):
            if session_id not in only:
                sessions.append(session_id)
                only[session_id] = [only_evaluator] if only_evaluator else None
    cases: list[dict[str, Any]] = []
    labelled: dict[str, str] = {}
    users: dict[str, str | None] = {}
    groups: dict[tuple[str, ...] | None, list[str]] = {}
    for session_id in sessions:
        chosen = only[session_id]
        key = tuple(chosen) if chosen else None
        groups.setdefault(key, []).append(session_id)
    for key, ids in groups.items():
        found, versions, who = labelled_cases(engine, load, project_id, project, ids,
                                                       evaluators=key, explicit=explicit)
        cases.extend(found)
        labelled.update(versions)
        users.update(who)
    for i, case in enumerate(body.get("cases") or []):
        try:
            cases.append(check_case(case))
        except BadRequest as exc:
            raise BadRequest(f"cases[{i}]: {exc.message}") from None
    if body.get("conversations"):
        expected = body.get("expected")
        if expected is not None and not isinstance(expected, dict):
            raise BadRequest("expected: a mapping of evaluator to pass or fail, for every conversation")
        cases.extend(cases_from_conversations(body["conversations"], "conversations", expected,
                                                       body.get("reward_dimension"), options))
    if not cases:
        raise BadRequest("nothing to add: give sessions, cases, conversations, or from_labels that match labels")
    evaluator_names = {e for c in cases for e in c["expected"]}
    pins = pins_for(engine, catalogue, evaluator_names, labelled)
    with engine.begin() as conn:
        return add_cases(conn, project_id, name, cases, pins=pins, author=body.get("author"),
                                  note=body.get("note"), create=body.get("create", True) is not False,
                                  user_ids=users)


# -- JSONL --------------------------------------------------------------------


def export_lines(dataset: Mapping[str, Any], version: Mapping[str, Any], cases: list[dict[str, Any]]) -> Iterable[str]:
    """A version as JSON lines: a header (name, version, digest, pins, floors), then one case a line."""
    yield canonical({"dataset": dataset["name"], "version": version["version"], "digest": version["digest"],
                     "case_count": version["case_count"], "pins": version["pins"], "floors": dataset["floors"],
                     "description": dataset.get("description")})
    for case in cases:
        yield canonical(case)


def read_lines(text: str, source: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header or None, cases) of a JSONL export or of a file of cases; errors name the line."""
    header: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise BadRequest(f"{source}, line {number}: not JSON: {exc}") from None
        if isinstance(item, dict) and "dataset" in item and "pins" in item and "case_id" not in item:
            if header is not None or cases:
                raise BadRequest(f"{source}, line {number}: a header must be the first line")
            header = item
            continue
        try:
            cases.append(check_case(item))
        except BadRequest as exc:
            raise BadRequest(f"{source}, line {number}: {exc.message}") from None
    if header is not None:
        if len(cases) != header.get("case_count", len(cases)):
            raise BadRequest(f"{source}: the header says {header.get('case_count')} cases, the file has {len(cases)}")
        if version_digest((digest_of(c) for c in cases), header["pins"]) != header.get("digest"):
            raise DatasetIntegrityError(f"{source}: the cases or pins do not match the digest of "
                                        f"{header['dataset']}@{header['version']}")
    return header, cases
