"""The catalogue: config validation with file/line/key, versions from content, effective rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.errors import ConfigError
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.settings import load_settings


def catalogue_of(tmp_path: Path, text: str, module: str | None = None):  # type: ignore[no-untyped-def]
    if module is not None:
        (tmp_path / "mychecks.py").write_text(module)
    path = tmp_path / "agentwatch.yaml"
    path.write_text(text)
    settings = load_settings(path, environ={})
    return load_catalogue(settings.sections, settings.config_path)


PY = "def check(session):\n    return 1.0\n"


def test_python_evaluator_version_follows_its_source(tmp_path: Path) -> None:
    import sys

    text = "evaluators:\n  - {name: mine, kind: python, function: 'mychecks:check', threshold: 0.5}\n"
    first = catalogue_of(tmp_path, text, PY).by_name("mine")
    sys.modules.pop("mychecks", None)
    same = catalogue_of(tmp_path, text.replace("0.5", "0.9"), PY).by_name("mine")
    sys.modules.pop("mychecks", None)
    edited = catalogue_of(tmp_path, text, PY.replace("1.0", "0.5")).by_name("mine")
    sys.modules.pop("mychecks", None)
    assert first.version == same.version, "the threshold is policy, not content"
    assert edited.version != first.version


def test_judge_prompt_or_model_change_makes_a_new_version(tmp_path: Path) -> None:
    base = ("evaluators:\n  - name: judge\n    kind: llm\n    params: {base_url: 'http://127.0.0.1:9/v1', "
            "api_key_env: JUDGE_KEY, model: m-1, prompt: 'Rate {answer}'}\n")
    v1 = catalogue_of(tmp_path, base).by_name("judge").version
    v2 = catalogue_of(tmp_path, base.replace("Rate {answer}", "Score {answer}")).by_name("judge").version
    v3 = catalogue_of(tmp_path, base.replace("m-1", "m-2")).by_name("judge").version
    assert len({v1, v2, v3}) == 3


def test_effective_rates_by_kind(tmp_path: Path) -> None:
    text = ("sampling: {default_rate: 0.1}\nevaluators:\n"
            "  - {name: mine, kind: python, function: 'mychecks:check'}\n"
            "  - {name: mine2, kind: python, function: 'mychecks:check', sample_rate: 0.5}\n"
            "  - {name: external:helpfulness, kind: external, threshold: 0.7}\n")
    cat = catalogue_of(tmp_path, text, PY)
    assert cat.default_rate == 0.1
    assert cat.by_name("mine").effective_rate(cat.default_rate) == 0.1
    assert cat.by_name("mine2").effective_rate(cat.default_rate) == 0.5
    assert cat.by_name("external:helpfulness").effective_rate(cat.default_rate) == 1.0
    assert cat.external_spec("helpfulness").threshold == 0.7
    assert cat.external_spec("other").threshold is None


@pytest.mark.parametrize(("text", "expected"), [
    ("evaluators:\n  - name: x\n    kind: magic\n", "line 3, key evaluators[0].kind: expected one of"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: nomodule:f\n",
     "line 4, key evaluators[0].function: cannot import 'nomodule'"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: 'mychecks:check'\n    threshold: 3\n",
     "line 5, key evaluators[0].threshold: expected a number from 0 to 1"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: 'mychecks:check'\n    colour: red\n",
     "line 5, key evaluators[0].colour: unknown key"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: 'mychecks:check'\n    severity: urgent\n",
     "line 5, key evaluators[0].severity: expected page or ticket"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: 'mychecks:check'\n    sample_rate: 2\n",
     "line 5, key evaluators[0].sample_rate: expected a rate from 0 to 1"),
    ("evaluators:\n  - name: x\n    kind: python\n    function: 'mychecks:check'\n    filter: {team: a}\n",
     "line 5, key evaluators[0].filter: unknown filter 'team'"),
    ("evaluators:\n  - {name: x, kind: python, function: 'mychecks:check'}\n"
     "  - {name: x, kind: python, function: 'mychecks:check'}\n", "line 3, key evaluators[1].name: 'x' is declared"),
    ("evaluators:\n  - {name: helpfulness, kind: external}\n", "key evaluators[0].name: external evaluators are"),
    ("sampling: {default_rate: 5}\n", "line 1, key sampling.default_rate: expected a rate"),
])
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        catalogue_of(tmp_path, text, PY)
    assert str(tmp_path / "agentwatch.yaml") in info.value.message
    assert expected in info.value.message


def test_embedding_faithfulness_without_the_extra_is_a_config_error(tmp_path: Path) -> None:
    text = ("evaluators:\n  - name: semantic\n    kind: faithfulness\n"
            "    params: {method: embedding, model: /nowhere/model}\n")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"line 4, key evaluators\[0\].params: .*embeddings"):
            catalogue_of(tmp_path, text)
    else:  # pragma: no cover - with the extra installed the missing model is the error
        with pytest.raises(ConfigError, match="evaluators\\[0\\].params"):
            catalogue_of(tmp_path, text)
    with pytest.raises(ConfigError, match="method: expected claims"):
        catalogue_of(tmp_path, text.replace("embedding", "magic"))


def test_a_registered_kind_is_loaded_validated_and_built(tmp_path: Path) -> None:
    from agentwatch.evaluate import build as registry
    from agentwatch.evaluate.base import EvalResult

    class Constant:
        def __init__(self, value: float) -> None:
            self.value = value

        async def evaluate(self, session):  # type: ignore[no-untyped-def]
            return EvalResult.ok(self.value)

    def constant(spec, check_only):  # type: ignore[no-untyped-def]
        value = spec.params.get("value")
        if not isinstance(value, (int, float)):
            raise ValueError(f"value: expected a number, got {value!r}")
        return Constant(float(value))

    text = "evaluators:\n  - name: always\n    kind: constant\n    params: {value: 0.5}\n"
    with pytest.raises(ConfigError, match="kind: expected one of rule, python, llm, faithfulness, external"):
        catalogue_of(tmp_path, text)
    registry.register_kind("constant")(constant)
    try:
        with pytest.raises(ValueError, match="registered already"):
            registry.register_kind("constant")(constant)
        spec = catalogue_of(tmp_path, text).by_name("always")
        assert spec is not None and spec.kind == "constant"
        evaluator = registry.build(spec)
        assert isinstance(evaluator, Constant) and evaluator.value == 0.5
        with pytest.raises(ConfigError, match=r"line 4, key evaluators\[0\].params: value: expected a number"):
            catalogue_of(tmp_path, "evaluators:\n  - name: always\n    kind: constant\n    params: {value: x}\n")
    finally:
        del registry.BUILDERS["constant"]
