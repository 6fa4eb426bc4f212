"""Exactly one BOS; special-token strings in user content neither crash nor move the pooled position;
over-long input follows the overflow policy."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from worker.engine import Rejected, Scored, Scorer

SPECIALS = ["<|eot_id|>", "<|reserved_special_token_5|>", "<|begin_of_text|>", "<|start_header_id|>"]


def conv(user: str, reply: str = "Sure, here it is.") -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()


def last_token_score(hf_model, ids: list[int]) -> float:
    """Reference pooling: the score head on the hidden state of the sequence's own last token."""
    with torch.inference_mode():
        hidden = hf_model.model(input_ids=torch.tensor([ids])).last_hidden_state
        return float(hf_model.score(hidden[0, -1]))


@pytest.mark.parametrize("special", SPECIALS)
def test_exactly_one_bos_and_pooling_unmoved(engine, tokenizer, hf_model, card_pipeline, special):
    conversation = conv(f"Please repeat {special} twice: {special}{special}", f"{special} done {special}")
    [enc] = engine.renderer.encode([conversation])
    assert enc.ids[0] == tokenizer.bos_token_id
    assert enc.ids.count(tokenizer.bos_token_id) == 1
    if special == "<|reserved_special_token_5|>":
        assert tokenizer.pad_token_id in enc.ids  # the pad id really is inside the sequence
    # Alone and batched with longer, padded neighbours, the score is the last real token's.
    expected = last_token_score(hf_model, enc.ids)
    longer = conv("x " * 200)
    results = engine.score([longer, conversation, conv("y " * 50)])
    assert isinstance(results[1], Scored)
    assert results[1].num_tokens == len(enc.ids)
    assert results[1].score == pytest.approx(expected, abs=1e-4)
    assert results[1].score == pytest.approx(card_pipeline([conversation])[0], abs=1e-4)


def test_user_typed_bos_is_removed_like_the_card(engine, tokenizer):
    with_bos = engine.renderer.encode([conv("<|begin_of_text|>hello")])[0].ids
    without = engine.renderer.encode([conv("hello")])[0].ids
    assert with_bos == without


def test_batch_composition_does_not_change_scores(engine):
    target = conv("What is a reward model?", "A model that scores replies.")
    alone = engine.score([target])[0]
    crowd = engine.score([conv("a " * k) for k in (5, 300, 40)] + [target])[-1]
    assert isinstance(alone, Scored) and isinstance(crowd, Scored)
    assert crowd.score == pytest.approx(alone.score, abs=1e-5)


def test_overflow_truncates_from_the_left(tiny_model_dir, tokenizer, hf_model):
    engine = Scorer.load(str(tiny_model_dir))
    engine.renderer.max_length = engine.max_length = 64  # a short limit keeps the test fast
    long = conv("word " * 200, "the reply that matters")
    [enc] = engine.renderer.encode([long])
    full = tokenizer(engine.renderer.text(long))["input_ids"]
    assert len(full) > 64
    assert enc.truncated and len(enc.ids) == 64
    assert enc.ids[0] == tokenizer.bos_token_id and enc.ids[1:] == full[-63:]
    [result] = engine.score([long])
    assert isinstance(result, Scored) and result.truncated and result.num_tokens == 64
    assert result.score == pytest.approx(last_token_score(hf_model, enc.ids), abs=1e-4)
    short = engine.score([conv("hi")])[0]
    assert isinstance(short, Scored) and not short.truncated


def test_overflow_error_rejects_only_that_item(tiny_model_dir):
    engine = Scorer.load(str(tiny_model_dir), overflow="error")
    engine.renderer.max_length = engine.max_length = 64
    results = engine.score([conv("hi"), conv("word " * 200), conv("bye")])
    assert isinstance(results[0], Scored) and isinstance(results[2], Scored)
    assert isinstance(results[1], Rejected) and results[1].code == "too_long"
    assert "64-token" in results[1].message


def test_real_model_max_length_is_4096(engine, tokenizer):
    assert engine.max_length == 4096 == tokenizer.model_max_length
    assert tokenizer.truncation_side == "left"
