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
    # The bar on this split: faithfulness separates, no evaluator is worse than a coin, and the
    # confirmation rule's flags are mostly real failures.
    separation = {name: bench.separation(scores, outcomes, name) for name in scores["tau-airline-0-0"]}
    assert separation["faithfulness"]["auc"] >= 0.60
    assert all(s["auc"] >= 0.5 for s in separation.values()), separation
    assert separation["confirmation"]["precision"] >= 0.85 and separation["confirmation"]["true_flags"] >= 16
    table = bench.separation_report(scores, outcomes)
    assert table[0].split() == ["evaluator", "AUC", "95%", "interval", "flags", "failed", "precision", "recall"]
    assert {line.split()[0] for line in table[1:]} == set(separation)


def test_auc_is_the_mann_whitney_statistic_with_ties_half() -> None:
    bench = load_bench()
    assert bench.auc([0.9, 0.8, 0.5], [0.7, 0.5, 0.1]) == 7.5 / 9
    assert bench.auc([1.0, 1.0], [0.0]) == 1.0 and bench.auc([0.0], [1.0, 1.0]) == 0.0
    assert bench.auc([1.0, 1.0, 1.0], [1.0]) == 0.5
    low, high = bench.bootstrap_auc([0.9, 0.8, 0.5, 0.6], [0.7, 0.5, 0.1, 0.4])
    assert 0.0 <= low <= bench.auc([0.9, 0.8, 0.5, 0.6], [0.7, 0.5, 0.1, 0.4]) <= high <= 1.0
    assert (low, high) == bench.bootstrap_auc([0.9, 0.8, 0.5, 0.6], [0.7, 0.5, 0.1, 0.4]), "a fixed seed"


def test_flag_precision_and_recall_against_failure() -> None:
    bench = load_bench()
    def score(value: float) -> dict[str, object]:
        return {"e": {"status": "ok", "score": value, "passed": value >= 1.0}}
    scores = {"a": score(1.0), "b": score(0.0), "c": score(0.0), "d": score(1.0), "e": score(0.0)}
    outcomes = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0, "e": 0.0}
    found = bench.separation(scores, outcomes, "e")
    assert (found["flags"], found["true_flags"], found["failures"]) == (3, 2, 3)
    assert found["precision"] == 2 / 3 and found["recall"] == 2 / 3
