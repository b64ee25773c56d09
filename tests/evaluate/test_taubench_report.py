"""The tau-bench report: real sessions through ingest, scored, split by their real outcome."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def load_bench():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[2] / "bench" / "taubench.py"
    spec = importlib.util.spec_from_file_location("taubench_bench", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_report_joins_scores_with_rewards(shared_data: Path) -> None:
    bench = load_bench()
    scores, outcomes = bench.run(shared_data / "tau-bench" / "gpt-4o-airline-dev.json")
    assert len(outcomes) == 100 and sum(1 for v in outcomes.values() if v >= 1.0) == 31
    assert set(scores) == set(outcomes), "every imported session is scored"
    assert all({"tool_use", "confirmation", "budget", "faithfulness"} <= set(s) for s in scores.values())
    lines = bench.report(scores, outcomes)
    by_key = {tuple(line.split()[:2]): line.split() for line in lines[1:]}
    assert by_key[("faithfulness", "success")][2] == "31" and by_key[("faithfulness", "failure")][2] == "69"
    # tau-bench tools answer "Error: ..." with no span error: the rule sees them.
    assert any(s["tool_use"]["passed"] is False for s in scores.values())
