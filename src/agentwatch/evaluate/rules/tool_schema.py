"""The ``tool_schema`` rule: a tool's arguments and result valid against JSON Schemas.

``tool_schema``
    Each call of ``tool`` has arguments valid against ``arguments_schema`` and
    (when the call succeeded) a result valid against ``result_schema``
    (JSON Schema, any draft the ``jsonschema`` package knows; formats checked).
    A JSON string is parsed first. Arguments or a result that were not
    recorded (content capture off) make a failure, not a violation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, _Unevaluable, listing, parse_json
from agentwatch.evaluate.session import SessionView

__all__ = ["ToolSchema", "ToolSchemaParams"]


@dataclass(frozen=True, slots=True)
class ToolSchemaParams:
    tool: str
    arguments_schema: Mapping[str, Any] | None = None
    result_schema: Mapping[str, Any] | None = None


class ToolSchema(Rule):
    """A tool's arguments and result valid against JSON Schemas."""

    name = "tool_schema"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tool", "arguments_schema", "result_schema"))
        tool = p.string("tool", required=True)
        assert tool is not None
        self.params = ToolSchemaParams(tool=tool, arguments_schema=p.mapping("arguments_schema"),
                                       result_schema=p.mapping("result_schema"))
        if self.params.arguments_schema is None and self.params.result_schema is None:
            raise ValueError(f"rule {self.name!r}: give 'arguments_schema' or 'result_schema'")
        self._arguments = self._validator(p, "arguments_schema", self.params.arguments_schema)
        self._result = self._validator(p, "result_schema", self.params.result_schema)

    def _validator(self, p: ParamReader, key: str, schema: Mapping[str, Any] | None) -> Any:
        if schema is None:
            return None
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"rule {self.name!r}: parameter {key!r} is not a valid JSON Schema: "
                             f"{exc.message}") from None
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    @staticmethod
    def _errors(validator: Any, instance: Any) -> list[str]:
        out = []
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(part) for part in error.absolute_path)
            out.append(f"{where}: {error.message}" if where else error.message)
        return out

    def check(self, session: SessionView) -> EvalResult:
        calls = [c for c in session.tool_calls if c.name == self.params.tool]
        if not calls:
            return EvalResult.ok(1.0, reason=f"tool {self.params.tool} not called")
        problems = []
        for call in calls:
            if self._arguments is not None:
                if call.arguments is None:
                    raise _Unevaluable(f"no arguments recorded for tool {call.name} (span {call.span_id}); "
                                       "is message content capture on?")
                for message in self._errors(self._arguments, parse_json(call.arguments)):
                    problems.append(f"tool {call.name} arguments: {message} (span {call.span_id})")
            if self._result is not None and call.success:
                if call.result is None:
                    raise _Unevaluable(f"no result recorded for tool {call.name} (span {call.span_id}); "
                                       "is message content capture on?")
                for message in self._errors(self._result, parse_json(call.result)):
                    problems.append(f"tool {call.name} result: {message} (span {call.span_id})")
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(calls)} call(s) of {self.params.tool} match the schema")
