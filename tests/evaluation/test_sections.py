"""RewardBench section arithmetic and the EvalBiasBench table, against hand computations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmscore.evaluation import (
    EVALBIASBENCH_ROWS,
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    evalbiasbench_row,
    evalbiasbench_table,
    evaluate,
    evaluate_accuracy,
    rewardbench_sections,
)
from rmscore.summary import accuracy_summary

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Ten pairs per subset, so the job's own counts never equal RewardBench's weights: a pooled
# accuracy and the weighted section score differ, and only the weighted one is right.
JOB: dict[str, tuple[int, int]] = {
    # Chat: every subset present
    "alpacaeval-easy": (9, 10),
    "alpacaeval-length": (8, 10),
    "alpacaeval-hard": (10, 10),
    "mt-bench-easy": (5, 10),
    "mt-bench-med": (7, 10),
    # Chat Hard: two of six
    "mt-bench-hard": (3, 4),
    "llmbar-natural": (1, 2),
    # Safety: three of five
    "refusals-dangerous": (10, 10),
    "xstest-should-refuse": (5, 10),
    "xstest-should-respond": (9, 10),
    # Reasoning: all seven
    "math-prm": (4, 10),
    **{f"hep-{lang}": (8, 10) for lang in ("cpp", "go", "java", "js", "python", "rust")},
    # not RewardBench's: counted overall, in no section
    "my-own-subset": (0, 6),
}


def _sections(tallies: dict[str, tuple[int, int]]) -> dict[str, float | None]:
    rb = rewardbench_sections(tallies)
    assert rb is not None
    return {s["section"]: s["score"] for s in rb["sections"]}


def test_constants_are_rewardbenchs() -> None:
    assert sum(len(v) for v in REWARDBENCH_SECTIONS.values()) == len(REWARDBENCH_EXAMPLE_COUNTS) == 23
    assert {n for v in REWARDBENCH_SECTIONS.values() for n in v} == set(REWARDBENCH_EXAMPLE_COUNTS)
    # math-prm is upweighted to equal the six code languages together.
    assert REWARDBENCH_EXAMPLE_COUNTS["math-prm"] == 984 == 6 * REWARDBENCH_EXAMPLE_COUNTS["hep-go"]


def test_section_scores_match_hand_computation() -> None:
    got = _sections(JOB)
    # Chat: (.9*100 + .8*95 + 1*95 + .5*28 + .7*40) / (100+95+95+28+40)
    assert got["Chat"] == pytest.approx((90 + 76 + 95 + 14 + 28) / 358)
    # Chat Hard: (.75*37 + .5*100) / 137
    assert got["Chat Hard"] == pytest.approx((27.75 + 50) / 137)
    # Safety: (1*100 + .5*250 + .9*154) / (100+250+154)
    assert got["Safety"] == pytest.approx(363.6 / 504)
    # Reasoning: (.4*984 + .8*164*6) / 1968 = (.4 + .8) / 2, not the pooled 52/70
    assert got["Reasoning"] == pytest.approx(0.6)
    rb = rewardbench_sections(JOB)
    assert rb is not None
    assert rb["score"] == pytest.approx(sum(got.values()) / 4)  # type: ignore[arg-type]
    assert rb["complete"] is False
    safety = next(s for s in rb["sections"] if s["section"] == "Safety")
    assert safety["missing"] == ["refusals-offensive", "donotanswer"]
    assert [r["weight"] for r in safety["subsets"]] == [100, 250, 154]


def test_section_without_subsets_has_no_score_and_no_total() -> None:
    got = rewardbench_sections({"math-prm": (1, 2), "hep-go": (2, 2)})
    assert got is not None
    scores = {s["section"]: s["score"] for s in got["sections"]}
    # Only the subsets present are weighed: (.5*984 + 1*164) / (984 + 164)
    assert scores == {"Chat": None, "Chat Hard": None, "Safety": None, "Reasoning": pytest.approx(656 / 1148)}
    assert got["score"] is None


def test_not_rewardbench_and_chat_jobs() -> None:
    assert rewardbench_sections({"harmless-base": (60, 100)}) is None
    assert evalbiasbench_table({"harmless-base": (60, 100)}) is None
    assert evaluate({}) is None
    result = evaluate({"harmless-base": (60, 100), "all": (1, 4)})
    assert result is not None
    assert result["overall"] == {"correct": 61, "n": 104, "accuracy": 61 / 104}
    assert result["rewardbench"] is None and result["evalbiasbench"] is None


def test_bad_tally_is_refused() -> None:
    with pytest.raises(ValueError, match="not a tally"):
        evaluate({"x": (3, 2)})


def test_evalbiasbench_table_has_the_six_rows_of_the_card() -> None:
    names = list(json.loads((SHARED / "evalbiasbench.json").read_text()))
    assert len(names) == 6
    assert sorted(evalbiasbench_row(n) for n in names) == sorted(EVALBIASBENCH_ROWS)  # type: ignore[type-var]
    tallies = {name: (i + 1, 12) for i, name in enumerate(names)}
    table = evalbiasbench_table(tallies)
    assert table is not None
    assert [r["bias"] for r in table["rows"]] == [
        "Length",
        "Concreteness",
        "Empty Reference",
        "Content Continuation",
        "Nested Instruction",
        "Familiar Knowledge",
    ]
    assert [r["reference"] for r in table["rows"]] == [82.4, 92.9, 46.2, 100.0, 83.3, 58.3]
    for row in table["rows"]:
        (source,) = row["subsets"]
        assert row["accuracy"] == pytest.approx(tallies[source][0] / 12)
    assert table["overall"]["n"] == 72 and table["overall"]["correct"] == sum(range(1, 7))


def test_evalbiasbench_partial_job_still_lists_six_rows() -> None:
    table = evalbiasbench_table({"Length_Bias": (3, 4), "other": (1, 1)})
    assert table is not None
    assert len(table["rows"]) == 6
    assert table["rows"][0]["accuracy"] == 0.75 and table["rows"][0]["subsets"] == ["Length_Bias"]
    assert all(r["accuracy"] is None and r["n"] == 0 for r in table["rows"][1:])


def test_evaluate_from_a_job_summary_accuracy() -> None:
    acc = accuracy_summary(JOB)
    ev = evaluate_accuracy(acc)
    assert ev is not None
    assert ev["overall"]["n"] == sum(n for _, n in JOB.values())
    assert {r["subset"]: (r["correct"], r["n"]) for r in ev["subsets"]} == JOB
    assert _sections(JOB) == {s["section"]: s["score"] for s in ev["rewardbench"]["sections"]}
    assert evaluate_accuracy(None) is None


def test_status_tables_show_what_applies() -> None:
    from rich.console import Console

    from rmscore.cli.report import evaluation_tables

    assert evaluation_tables(None) == [] and evaluation_tables(evaluate({"x": (1, 2)})) == []
    tables = evaluation_tables(evaluate(JOB | {"length bias": (3, 4)}))
    console = Console(width=120, record=True)
    for t in tables:
        console.print(t)
    out = console.export_text()
    assert len(tables) == 2
    assert "Reasoning │ 60.0%" in out and "Safety    │ 72.1%" in out
    assert "Length               │     4 │    75.0% │  82.4% │ -7.4" in out
