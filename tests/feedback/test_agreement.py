"""Agreement statistics: the published LLMBar GPT-4 judge figures, kappa and intervals, threshold choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentwatch.feedback import agreement

SUBSETS = ["Natural", "Adversarial-GPTInst", "Adversarial-GPTOut", "Adversarial-Manual", "Adversarial-Neighbor"]


def published_ratio(text: str) -> tuple[int, int]:
    counts = text.split("=")[0].split("/")
    return int(counts[0]), int(counts[1])


@pytest.mark.parametrize("subset", SUBSETS)
def test_reproduces_the_published_llmbar_gpt4_judge_figures(shared_data: Path, subset: str) -> None:
    folder = shared_data / "llmbar" / subset
    results = json.loads((folder / "gpt4-vanilla-judge-result.json").read_text())
    published = json.loads((folder / "gpt4-vanilla-judge-statistics.json").read_text())
    labels = [str(r["label"]) for r in results]
    plain = [r["results"][0]["swap = False"]["winner"] for r in results]
    swapped = [r["results"][0]["swap = True"]["winner"] for r in results]
    n = len(results)
    for key, winners in (("correct_False", plain), ("correct_True", swapped)):
        good, total = published_ratio(published[key])
        assert total == n
        assert agreement.accuracy(winners, labels) == good / n
    good, _ = published_ratio(published["correct_both"])
    both = [a == label and b == label for a, b, label in zip(plain, swapped, labels)]
    assert agreement.accuracy(both, [True] * n) == good / n
    assert agreement.cohen_kappa(plain, swapped) == pytest.approx(published["kappa_agreement"], abs=1e-12)


def test_kappa_of_raters_that_agree_by_chance_only_is_zero() -> None:
    a = [True, True, False, False]
    b = [True, False, True, False]
    assert agreement.accuracy(a, b) == 0.5
    assert agreement.cohen_kappa(a, b) == 0.0
    assert agreement.cohen_kappa(a, a) == 1.0
    assert math.isnan(agreement.cohen_kappa([], []))


def test_binary_metrics_count_failures_as_positives_with_bootstrap_intervals() -> None:
    human = [True] * 10 + [False] * 30
    flags = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 27
    m = agreement.binary_metrics(human, flags, intervals=True, resamples=999)
    assert m["confusion"] == {"tp": 8, "fp": 3, "tn": 27, "fn": 2}
    assert m["accuracy"] == pytest.approx(35 / 40) and m["tpr"] == 0.8 and m["tnr"] == 0.9
    low, high = m["ci95"]["kappa"]
    assert low < m["kappa"] < high and high - low > 0.1
    assert m["ci95"]["accuracy"][0] < 35 / 40 < m["ci95"]["accuracy"][1]
    again = agreement.binary_metrics(human, flags, intervals=True, resamples=999)
    assert again["ci95"] == m["ci95"]  # a fixed seed: the same cases give the same intervals


def test_spearman_and_mae_of_scores_against_expected_scores() -> None:
    m = agreement.score_metrics([0.1, 0.4, 0.5, 0.9], [0.3, 0.2, 0.6, 1.0], intervals=True, resamples=999)
    assert m["spearman"] == pytest.approx(0.8)
    assert m["mae"] == pytest.approx(0.15)


def test_certifying_a_five_percent_miss_rate_with_no_miss_takes_59_failures() -> None:
    assert agreement.clopper_pearson(0, 58, one_sided=True)[1] > 0.05
    assert agreement.clopper_pearson(0, 59, one_sided=True)[1] < 0.05


def test_recommended_threshold_meets_the_miss_rate_target_with_confidence() -> None:
    # 60 failures scoring 0.0-0.59 and 100 passes scoring 0.3-0.99: the threshold must flag every failure.
    fails = [i / 100 for i in range(60)]
    passes = [0.3 + i * 0.0069 for i in range(100)]
    scores, human = fails + passes, [True] * 60 + [False] * 100
    rec = agreement.recommend_threshold(scores, human, target_fnr=0.05)
    assert rec is not None and rec["met"]
    assert rec["fnr"] == 0.0 and rec["fnr_upper"] <= 0.05
    assert all(s < rec["threshold"] for s in fails)
    fpr = sum(1 for s in passes if s < rec["threshold"]) / 100
    assert rec["fpr"] == pytest.approx(fpr) and rec["fpr_ci95"][0] <= fpr <= rec["fpr_ci95"][1]
    strict = agreement.recommend_threshold(scores, human, target_fnr=None, target_fpr=0.05)
    assert strict is not None and strict["fpr_upper"] <= 0.05 and strict["threshold"] <= rec["threshold"]


def test_a_target_that_cannot_be_met_says_so() -> None:
    rec = agreement.recommend_threshold([0.2, 0.9, 0.3], [True, False, False], target_fnr=0.05)
    assert rec is not None and rec["met"] is False and rec["fnr"] == 0.0
    assert agreement.recommend_threshold([0.2, 0.3], [True, True]) is None


def test_lower_is_better_scores_flag_above_the_threshold() -> None:
    scores = [0.9, 0.8, 0.7, 0.1, 0.2, 0.15]
    human = [True, True, True, False, False, False]
    rec = agreement.recommend_threshold(scores, human, direction="lower_is_better", target_fnr=0.5)
    assert rec is not None and rec["fnr"] == 0.0 and rec["fpr"] == 0.0
    assert 0.2 <= rec["threshold"] < 0.7
