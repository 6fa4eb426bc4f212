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


def test_remote_status_prints_sections_and_models(capsys: pytest.CaptureFixture[str]) -> None:
    from rmscore.cli.remote import print_job

    print_job(summary())
    out = capsys.readouterr().err
    assert "RewardBench sections" in out
    assert "tiny-b" in out and "25.0%" in out  # the second model's row
