"""`rmscore status` prints the evaluation tables and, for a job scored by several models, each model."""

from __future__ import annotations

from typing import Any

import pytest

from rmscore.evaluation import evaluate_accuracy


def summary() -> dict[str, Any]:
    acc = {
        "overall": 0.75,
        "n": 8,
        "subsets": {"alpacaeval-easy": {"accuracy": 1.0, "n": 4}, "llmbar-natural": {"accuracy": 0.5, "n": 4}},
    }
    other = {"overall": 0.25, "n": 8, "subsets": {"alpacaeval-easy": {"accuracy": 0.25, "n": 8}}}
    return {
        "id": "j1",
        "status": "completed",
        "kind": "pairwise",
        "model": "tiny",
        "request_counts": {"total": 16, "completed": 16, "failed": 0},
        "accuracy": acc,
        "evaluation": evaluate_accuracy(acc),
        "models": ["tiny", "tiny-b"],
        "by_model": {
            "tiny": {"accuracy": acc, "evaluation": evaluate_accuracy(acc)},
            "tiny-b": {"accuracy": other, "evaluation": evaluate_accuracy(other)},
        },
    }


def test_status_prints_sections_and_models(capsys: pytest.CaptureFixture[str]) -> None:
    from rmscore.cli.display import print_job

    print_job(summary())
    out = capsys.readouterr().err
    assert "RewardBench sections" in out
    assert "tiny-b" in out and "25.0%" in out  # the second model's row


def test_compare_prints_subsets_and_disagreements(capsys: pytest.CaptureFixture[str]) -> None:
    from rmscore.cli.compare import print_comparison

    print_comparison(
        {
            "job_id": "j1",
            "models": ["tiny", "tiny-b"],
            "n": 2,
            "accuracy": {"tiny": 1.0, "tiny-b": 0.5},
            "agreement": 0.5,
            "disagreements_total": 1,
            "subsets": [{"subset": "s1", "n": 2, "accuracy": {"tiny": 1.0, "tiny-b": 0.5}, "agreement": 0.5}],
            "disagreements": [
                {
                    "line": 7,
                    "custom_id": "[red]x",
                    "subset": "s1",
                    "scores": {
                        "tiny": {"chosen_score": 1.0, "rejected_score": 0.5, "correct": True},
                        "tiny-b": {"chosen_score": 0.0, "rejected_score": 0.25, "correct": False},
                    },
                }
            ],
            "next_cursor": None,
        }
    )
    out = capsys.readouterr().err
    assert "pairs they disagree on: 1" in out
    assert "[red]x" in out  # untrusted ids are shown as text, not as markup
    assert "+0.500" in out and "-0.250" in out
