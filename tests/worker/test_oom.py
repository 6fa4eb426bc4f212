"""On CUDA out-of-memory the engine halves the micro-batch, retries and keeps the lower budget.
No GPU here: the error is injected into the forward pass."""

from __future__ import annotations

import pytest
import torch

from worker.engine import Rejected, Scored, Scorer


def convs(n: int) -> list[list[dict[str, str]]]:
    return [
        [
            {"role": "user", "content": f"question {i} " * (1 + i % 7)},
            {"role": "assistant", "content": f"answer {i}"},
        ]
        for i in range(n)
    ]


def test_oom_halves_batches_and_keeps_scores(tiny_model_dir, monkeypatch):
    clean = Scorer.load(str(tiny_model_dir), max_batch_tokens=100_000)
    expected = clean.score(convs(40))

    # One lane: out-of-memory is a CUDA event, and CUDA engines run one batch at a time.
    engine = Scorer.load(str(tiny_model_dir), max_batch_tokens=100_000, lanes=1)
    real_forward = engine._forward
    seen: list[int] = []  # padded tokens of each attempted batch
    limit = 300  # the injected card holds 300 padded tokens

    def forward(batch):
        seen.append(len(batch) * max(len(ids) for ids in batch))
        if seen[-1] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_forward(batch)

    monkeypatch.setattr(engine, "_forward", forward)
    got = engine.score(convs(40))
    assert engine.stats.oom_splits >= 2
    assert engine.max_batch_tokens <= limit
    assert max(seen) > limit and seen[-1] <= limit
    for a, b in zip(got, expected, strict=True):
        assert isinstance(a, Scored) and isinstance(b, Scored)
        assert a.score == pytest.approx(b.score, abs=1e-5)
    # The lower budget sticks: the next call never tries a batch that failed.
    seen.clear()
    splits = engine.stats.oom_splits
    engine.score(convs(40))
    assert max(seen) <= limit and engine.stats.oom_splits == splits


def test_single_item_oom_is_a_per_item_error(tiny_model_dir, monkeypatch):
    engine = Scorer.load(str(tiny_model_dir))

    def forward(batch):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(engine, "_forward", forward)
    [result] = engine.score(convs(1))
    assert isinstance(result, Rejected) and result.code == "out_of_memory"
