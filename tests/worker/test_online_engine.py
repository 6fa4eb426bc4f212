"""The engine's side of online serving: a hook at every micro-batch boundary (where the online lane
serves requests mid-chunk) that changes no score, and pre-rendered text scored by the card's rule."""

from __future__ import annotations

from pathlib import Path

import pytest

CONVS = [
    [{"role": "user", "content": f"Question {i}?" + " more" * (i % 7)}, {"role": "assistant", "content": "A" * (i + 1)}]
    for i in range(24)
]


@pytest.mark.parametrize("lanes", [1, 2])
def test_boundary_hook_runs_between_batches_and_changes_no_score(tiny_model_dir: Path, lanes: int) -> None:
    from worker.engine import Scored, Scorer

    engine = Scorer.load(str(tiny_model_dir), device="cpu", max_batch_tokens=64, lanes=lanes)
    plain = engine.score(CONVS)
    calls: list[list[float]] = []
    # What the online lane does at a boundary: score other work with the same engine, re-entrantly.
    engine.between_batches = lambda: calls.append([r.score for r in engine.score(CONVS[:2])])  # type: ignore[union-attr]
    hooked = engine.score(CONVS)
    batches = engine.stats.batches
    assert len(calls) >= 2, "the hook never ran between micro-batches"
    for got, want in zip(hooked, plain, strict=True):
        assert isinstance(got, Scored) and isinstance(want, Scored)
        assert abs(got.score - want.score) <= 1e-6
    for inner in calls:  # the work done at a boundary got the scores it would get alone
        assert inner == pytest.approx([r.score for r in plain[:2]], abs=1e-6)  # type: ignore[union-attr]
    engine.between_batches = None
    engine.score(CONVS)
    assert engine.stats.batches > batches


def test_text_scores_as_its_conversation(tiny_model_dir: Path, card_pipeline, tokenizer) -> None:  # type: ignore[no-untyped-def]
    from worker.engine import Scored, Scorer

    engine = Scorer.load(str(tiny_model_dir), device="cpu")
    conv = CONVS[5]
    rendered = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
    bos = tokenizer.bos_token
    assert rendered.startswith(bos)
    # As a trainer sends it (the template's BOS), without it, and with a stray BOS string inside:
    # every BOS string goes, and the tokenizer adds exactly one.
    texts = [rendered, rendered.removeprefix(bos), bos + rendered]
    enc = engine.renderer.encode([conv, *texts])
    assert all(e.ids == enc[0].ids for e in enc)
    assert enc[0].ids.count(tokenizer.bos_token_id) == 1
    want = card_pipeline([conv])[0]
    for r in engine.score(texts):
        assert isinstance(r, Scored) and abs(r.score - want) <= 1e-4
