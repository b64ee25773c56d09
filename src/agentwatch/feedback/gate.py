"""The regression gate: a candidate agent's outputs for a dataset's cases, scored by pinned evaluators.

The verdict comes only from re-running the evaluator versions the dataset
version pins on the candidate's sessions, never from comparing texts with
the recorded sessions. The gate fails (exit 1 from ``agentwatch gate``) when

- a case expected to **fail** a dimension (a labelled real failure) fails it
  again: a regression;
- a dimension's pass rate over its cases falls below its floor (the
  dataset's ``floors``, or ``--floor NAME=RATE``);
- a case has no candidate output, or an evaluator cannot score one.

From the command line::

    agentwatch gate --dataset support-regressions@3 --candidate run.jsonl --junit gate.xml
    agentwatch gate --dataset exported.jsonl --candidate traces.otlp.json

and from Python, running the agent in process and capturing its spans with
the OpenTelemetry SDK::

    from agentwatch.feedback.gate import load_dataset, run_agent

    dataset = load_dataset("tests/support-regressions.jsonl")
    result = run_agent(dataset, lambda case: my_agent.answer(case.input))
    assert result.passed, result.summary()

The pytest plugin offers the same as the ``agentwatch_gate`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch.errors import BadRequest
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.build import build
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.evaluate.session import SessionView
from agentwatch.feedback import datasets
from agentwatch.feedback.calibration import evaluate_all, pinned_spec
from agentwatch.feedback.snapshot import CASE_ATTRIBUTE, read_candidates, views_from_request


@dataclass(frozen=True)
class Dataset:
    """A dataset version as the gate reads it: name, version, pins, floors and cases."""

    name: str
    version: int
    pins: dict[str, Any]
    floors: dict[str, float]
    cases: list[dict[str, Any]]
    digest: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class GateCase:
    """What the agent function is given for a case."""

    case_id: str
    #: The first user message.
    input: str
    #: Every user message, turn by turn.
    user_messages: list[str]
    content: dict[str, Any]


@dataclass
class CaseResult:
    case_id: str
    evaluator: str
    evaluator_version: str
    expected: str
    label: str | None
    #: passed | failed | error | missing
    outcome: str
    score: float | None = None
    reason: str | None = None

    @property
    def regression(self) -> bool:
        return self.expected == "fail" and self.outcome == "failed"

    @property
    def problem(self) -> str | None:
        if self.regression:
            return "fails again"
        if self.outcome == "missing":
            return "no candidate output"
        if self.outcome == "error":
            return "could not be evaluated"
        return None


@dataclass
class GateResult:
    dataset: Dataset
    candidate: str
    results: list[CaseResult] = field(default_factory=list)
    floors: dict[str, float] = field(default_factory=dict)

    def pass_rates(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for r in self.results:
            passed, n = out.get(r.evaluator, (0, 0))
            out[r.evaluator] = (passed + (r.outcome == "passed"), n + 1)
        return out

    def floor_failures(self) -> dict[str, tuple[float, float]]:
        """Dimensions below their floor: evaluator -> (rate, floor)."""
        out = {}
        for name, (passed, n) in self.pass_rates().items():
            floor = self.floors.get(name)
            if floor is not None and n and passed / n < floor:
                out[name] = (passed / n, floor)
        return out

    @property
    def problems(self) -> list[CaseResult]:
        return [r for r in self.results if r.problem]

    @property
    def passed(self) -> bool:
        return not self.problems and not self.floor_failures()

    def summary(self) -> str:
        lines = [f"agentwatch gate: {self.dataset.ref} ({len(self.dataset.cases)} cases), candidate {self.candidate}"]
        versions = {r.evaluator: r.evaluator_version for r in self.results}
        below = self.floor_failures()
        for name, (passed, n) in sorted(self.pass_rates().items()):
            floor = self.floors.get(name)
            state = "BELOW FLOOR" if name in below else "ok"
            floor_text = f", floor {floor:.0%}" if floor is not None else ""
            lines.append(f"  {name}@{versions[name]}: {passed}/{n} pass ({passed / n:.0%}{floor_text}) {state}")
            for r in (x for x in self.results if x.evaluator == name):
                expected = f"expected {r.expected}" + (f" ({r.label})" if r.label else "")
                score = "" if r.score is None else f" score {r.score:.2f}"
                note = r.problem.upper() if r.problem else ("fixed" if r.expected == "fail" else "ok")
                reason = f": {r.reason}" if r.reason else ""
                lines.append(f"    {r.case_id}: {expected}, {r.outcome}{score}{reason} [{note}]")
        regressions = sum(1 for r in self.results if r.regression)
        others = len(self.problems) - regressions
        verdict = "PASSED" if self.passed else (f"FAILED ({regressions} regression(s), {others} other problem(s), "
                                                f"{len(below)} dimension(s) below floor)")
        lines.append(f"result: {verdict}")
        return "\n".join(lines)

    def junit_xml(self) -> str:
        """JUnit XML: a test case per (case, evaluator version), and one per dimension floor."""
        suite = ET.Element("testsuite", name=f"agentwatch gate {self.dataset.ref}")
        failures = 0
        for r in self.results:
            classname = f"{self.dataset.name}.{r.evaluator}@{r.evaluator_version}"
            case = ET.SubElement(suite, "testcase", classname=classname, name=r.case_id)
            ET.SubElement(case, "system-out").text = (
                f"evaluator {r.evaluator} version {r.evaluator_version}; expected {r.expected}; {r.outcome}"
                + ("" if r.score is None else f" (score {r.score:.4f})") + (f": {r.reason}" if r.reason else ""))
            if r.problem:
                failures += 1
                tag = "error" if r.outcome in ("error", "missing") else "failure"
                ET.SubElement(case, tag, message=f"{r.case_id} {r.problem} on {r.evaluator}@{r.evaluator_version}",
                              type=r.outcome).text = r.reason or ""
        for name, (passed, n) in sorted(self.pass_rates().items()):
            floor = self.floors.get(name)
            if floor is None:
                continue
            case = ET.SubElement(suite, "testcase", classname=f"{self.dataset.name}.floors", name=f"{name} pass rate")
            if passed / n < floor:
                failures += 1
                ET.SubElement(case, "failure", message=f"{name} pass rate {passed}/{n} is below its floor {floor:.2f}",
                              type="floor")
        suite.set("tests", str(len(suite.findall("testcase"))))
        suite.set("failures", str(failures))
        return ET.tostring(suite, encoding="unicode", xml_declaration=True)


# -- loading -------------------------------------------------------------------


def load_dataset(ref: str, *, engine: Any = None, project_id: int | None = None) -> Dataset:
    """A dataset version from an exported JSONL file, or ``NAME[@VERSION]`` from the store."""
    path = Path(ref)
    if path.is_file():
        header, cases = datasets.read_lines(path.read_text(encoding="utf-8"), str(path))
        if header is None:
            raise BadRequest(f"{path}: not a dataset export (no header line with dataset, version and pins)")
        return Dataset(str(header["dataset"]), int(header["version"]), dict(header["pins"]),
                       datasets.check_floors(header.get("floors")), cases, str(header.get("digest") or ""))
    if engine is None or project_id is None:
        raise BadRequest(f"{ref}: no such file, and no store to read a dataset of that name from")
    name, version = datasets.parse_ref(ref)
    with engine.connect() as conn:
        dataset, row, cases = datasets.read_version(conn, project_id, name, version)
    return Dataset(name, int(row["version"]), dict(row["pins"]), dict(dataset["floors"]), cases, row["digest"])


def load_candidates(path: str | Path) -> dict[str, SessionView]:
    """A candidate file: JSON lines (cases, messages or OTLP/JSON requests), or one OTLP protobuf request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.lstrip()[:1] in ("{", ""):
        return read_candidates(text, str(path))
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad candidate file
        raise BadRequest(f"{path}: neither JSON lines nor an OTLP protobuf request: {exc}") from None
    return views_from_request(request)


# -- running -------------------------------------------------------------------


def run_gate(dataset: Dataset, candidates: Mapping[str, SessionView], *, candidate: str = "candidate",
             catalogue: Catalogue | None = None, floors: Mapping[str, float] | None = None) -> GateResult:
    """Score each case's candidate with the pinned evaluator versions; the result says pass or fail."""
    result = GateResult(dataset, candidate, floors={**dataset.floors, **(floors or {})})
    wanted: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for case in dataset.cases:
        for name, expected in case["expected"].items():
            if expected.get("verdict") in ("pass", "fail"):
                wanted.setdefault(name, []).append((case, expected))
    unknown = sorted(set(result.floors) - set(wanted))
    if unknown:
        raise BadRequest(f"floor(s) for {', '.join(unknown)}: no case of {dataset.ref} expects a verdict of them")
    for name, items in sorted(wanted.items()):
        pin = dataset.pins.get(name)
        if pin is None:
            raise BadRequest(f"{dataset.ref} expects verdicts of {name!r} but pins no version of it")
        spec = pinned_spec(name, pin, catalogue)
        evaluator = build(spec)
        present = [(c, e) for c, e in items if c["case_id"] in candidates]
        scored = asyncio.run(evaluate_all(evaluator, [candidates[c["case_id"]] for c, _ in present]))
        by_case: dict[str, EvalResult] = {c["case_id"]: r for (c, _), r in zip(present, scored, strict=True)}
        for case, expected in items:
            found = by_case.get(case["case_id"])
            row = CaseResult(case["case_id"], name, spec.version, expected["verdict"], expected.get("label"),
                             "missing")
            if found is not None:
                if found.is_error or found.score is None:
                    row.outcome, row.reason = "error", found.error
                else:
                    row.score, row.reason = found.score, found.reason or None
                    row.outcome = "passed" if spec.passed(found.score) else "failed"
            result.results.append(row)
    return result


def _user_messages(content: Mapping[str, Any]) -> list[str]:
    return [str(t.get("user") or "") for t in content.get("turns") or [] if t.get("user")]


def gate_cases(dataset: Dataset) -> list[GateCase]:
    return [GateCase(c["case_id"], str(c.get("input") or ""), _user_messages(c), c) for c in dataset.cases]


@contextlib.contextmanager
def capture(tracer_provider: Any = None) -> Iterator[Any]:
    """An in-memory exporter on ``tracer_provider`` (else the global SDK provider, set up if there is none)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = tracer_provider or trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("the global tracer provider is not an SDK TracerProvider; pass tracer_provider=")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield provider, exporter
    finally:
        processor.shutdown()


def run_agent(dataset: Dataset, agent: Callable[[GateCase], Any], *, tracer_provider: Any = None,
              catalogue: Catalogue | None = None, floors: Mapping[str, float] | None = None) -> GateResult:
    """Run ``agent`` on every case in process, capture its spans over OTLP's own encoding, and gate them.

    Each call runs inside an ``invoke_agent`` span whose session id and
    ``agentwatch.case_id`` are the case's, so the agent's own spans
    (GenAI, OpenInference or OpenLLMetry instrumentation) join its session.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from agentwatch.sdk import session

    candidates: dict[str, SessionView] = {}
    with capture(tracer_provider) as (provider, exporter):
        for case in gate_cases(dataset):
            exporter.clear()
            with session(case.case_id, agent_name="gate", tracer_provider=provider) as span:
                span.set_attribute(CASE_ATTRIBUTE, case.case_id)
                agent(case)
            spans = exporter.get_finished_spans()
            if spans:
                views = views_from_request(encode_spans(spans))
                for view in views.values():
                    candidates[case.case_id] = view
    return run_gate(dataset, candidates, candidate="in-process agent", catalogue=catalogue, floors=floors)
