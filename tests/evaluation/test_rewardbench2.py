"""RewardBench 2's arithmetic against numbers worked out by hand (reward-bench `rewardbench/utils.py`)."""

from __future__ import annotations

import math

import pytest

from rmscore.evaluation import evaluate_listwise, rewardbench2_table, rewardbench2_ties

# (custom_id, scores with the correct ones first, how many are correct)
TIES = [
    ("ref:0", [3.0, 1.0, 2.0, 0.0], 1),  # worst correct 3 - best wrong 2 = +1: accurate
    ("tied:0", [4.0, 3.5, 3.0, 2.5, 1.0], 3),  # spread 4 - 3 = 1, gap 3 - 2.5 = 0.5: accurate
    ("ref:1", [1.0, 2.0, 0.0], 1),  # gap 1 - 2 = -1: not accurate
    ("tied:1", [5.0, 5.0, 4.0], 2),  # spread 0, gap +1: accurate
    ("ref:2", [2.0, 1.0], 1),  # accurate, but no tied:2, so only in the accuracies
]
# By hand: ref accuracy 2/3, tied accuracy 2/2; prompts with both: 0 and 1.
# correctness_preferred: [0.5 > 1, 1 > 0] -> 1/2; hard (min of ref and tied gaps [0.5, -1]): [0.5 > 1, -1 > 0] -> 0.
# margin: mean(tanh(0.5 / 1 - 1), tanh(-1 / 0 - 1) = tanh(-inf) = -1) = (tanh(-0.5) - 1) / 2.
MARGIN = (math.tanh(-0.5) - 1) / 2
TIES_SCORE = 0.30 * 1 + 0.30 * (2 / 3) + 0.20 * 0.5 + 0.20 * 0 + 0.01 * MARGIN  # = 0.592689414...


def test_ties_follows_reward_benchs_weighted_rule() -> None:
    got = rewardbench2_ties(TIES)
    assert got["problem"] is None and got["prompts"] == 2
    assert got["ref_accuracy"] == pytest.approx(2 / 3) and got["tied_accuracy"] == 1.0
    assert got["correctness_preferred"] == 0.5 and got["correctness_preferred_hard"] == 0.0
    assert got["margin_score"] == pytest.approx(MARGIN, abs=1e-12)
    assert got["score"] == pytest.approx(TIES_SCORE, abs=1e-12)
    assert abs(TIES_SCORE - 0.5926894142137) < 1e-12


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([("7", [1.0, 0.0], 1)], "custom_id"),  # RewardBench 2 splits the id on ':'
        ([("ref:x", [1.0, 0.0], 1)], "custom_id"),
        ([("ref:0", [1.0, 0.0], 1)], "both"),
        ([("ref:0", [1.0, 0.0], 1), ("tied:0", [2.0, 1.0], 1)], "one correct"),
    ],
)
def test_ties_without_what_its_rule_needs_has_no_score_and_says_why(lines: list, problem: str) -> None:
    got = rewardbench2_ties(lines)
    assert got["score"] is None and problem in got["problem"]


def _acc(subsets: dict[str, tuple[float, int]]) -> dict:
    n = sum(k for _, k in subsets.values())
    return {
        "overall": sum(a * k for a, k in subsets.values()) / n,
        "n": n,
        "subsets": {s: {"accuracy": a, "n": k} for s, (a, k) in subsets.items()},
    }


def test_the_table_is_the_unweighted_mean_of_six_domains_with_ties_by_its_rule() -> None:
    acc = _acc(
        {
            "Factuality": (0.5, 2),
            "Precise IF": (1.0, 1),
            "Math": (0.25, 4),
            "Safety": (0.75, 4),
            "Focus": (0.0, 1),
            "Ties": (0.9, 5),  # the mean per-line credit: not what RewardBench 2 reports for Ties
        }
    )
    table = rewardbench2_table(acc, rewardbench2_ties(TIES))
    assert table is not None and table["complete"]
    by = {r["section"]: r["score"] for r in table["sections"]}
    assert by["Ties"] == pytest.approx(TIES_SCORE) and by["Math"] == 0.25
    assert table["score"] == pytest.approx((0.5 + 1.0 + 0.25 + 0.75 + 0.0 + TIES_SCORE) / 6)
    assert table["score"] == pytest.approx(0.515448235702, abs=1e-9)


def test_a_missing_domain_leaves_the_overall_unset_and_other_subsets_no_table() -> None:
    table = rewardbench2_table(_acc({"math": (1.0, 2), "custom": (0.0, 3)}), None)
    assert table is not None and not table["complete"] and table["score"] is None
    assert [r["section"] for r in table["sections"] if r["score"] is not None] == ["Math"]  # names match without case
    assert rewardbench2_table(_acc({"custom": (0.5, 2)}), None) is None
    ev = evaluate_listwise(_acc({"custom": (0.5, 2)}), None)
    assert ev is not None and ev["overall"] == {"correct": 1.0, "n": 2, "accuracy": 0.5}
    assert evaluate_listwise(None, None) is None
