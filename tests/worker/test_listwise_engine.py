"""A listwise line's responses are scored exactly as each would be as its own chat, at any batch budget."""

from __future__ import annotations

import itertools

import pytest

from rmscore.formats import ChatItem, ListwiseItem, PairItem, parse_object
from rmscore.inputs import iter_parsed
from worker.engine import Scorer
from worker.scoring import score_items


@pytest.fixture(scope="module")
def lines(shared_data) -> list[ListwiseItem]:
    """HH-RLHF pairs as best-of-4 lines: the prompt as messages, responses as a string, as messages,
    as a two-turn continuation, and another pair's reply; every other line labelled RewardBench 2's way."""
    pairs = list(itertools.islice(iter_parsed(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz"), 13))
    assert all(isinstance(p, PairItem) for p in pairs)
    out = []
    for i, (p, q) in enumerate(itertools.pairwise(pairs)):
        assert isinstance(p, PairItem) and isinstance(q, PairItem)
        prompt = p.chosen[:-1]
        replies = [
            p.chosen[-1]["content"],
            [p.rejected[-1]],
            [{"role": "assistant", "content": "Let me think."}, {"role": "user", "content": "Go on."}, p.chosen[-1]],
            q.chosen[-1]["content"],
        ]
        obj = (
            {"prompt": prompt, "responses": replies}
            if i % 2
            else {"prompt": prompt, "chosen": replies[:1], "rejected": replies[1:], "subset": "Focus"}
        )
        item = parse_object(obj, i + 1)
        assert isinstance(item, ListwiseItem), item
        out.append(item)
    return out


@pytest.fixture(scope="module")
def reference(lines, card_pipeline) -> list[float]:
    return card_pipeline([c for item in lines for c in item.conversations])


@pytest.mark.parametrize(("budget", "batch_size"), [(16, 1), (1024, 256), (8192, 64)])
def test_listwise_scores_match_the_card_and_each_response_as_its_own_chat(
    tiny_model_dir, lines, reference, budget, batch_size
) -> None:
    engine = Scorer.load(str(tiny_model_dir), max_batch_tokens=budget, max_batch_size=batch_size)
    records = score_items(engine, lines)
    assert [r["line"] for r in records] == [item.line for item in lines]
    ours = [s for r in records for s in r["scores"]]
    assert len(ours) == len(reference) == 4 * len(lines)
    worst = max(abs(a - b) for a, b in zip(ours, reference, strict=True))
    assert worst < 1e-4, f"max |listwise - card pipeline| = {worst}"
    # The same conversations as chat lines, in reverse order so every batch holds other neighbours.
    chats = [ChatItem(n, None, c) for n, c in enumerate((c for i in lines for c in i.conversations), 1)]
    alone = {r["line"]: r["score"] for r in score_items(engine, chats[::-1])}
    gap = max(abs(s - alone[n]) for n, s in enumerate(ours, 1))
    assert gap <= 1e-6, f"max |listwise - chat| = {gap}"
    for item, r in zip(lines, records, strict=True):
        assert r["scores"][r["best"]] == max(r["scores"]) and r["scores"][r["worst"]] == min(r["scores"])
        assert ("correct" in r) == (item.n_chosen is not None)


def test_a_refused_response_fails_its_line_naming_it(tiny_model_dir, lines) -> None:
    engine = Scorer.load(str(tiny_model_dir), overflow="error")
    engine.renderer.max_length = engine.max_length = 64  # a short limit, as tests/worker/test_tokens.py does
    records = score_items(engine, lines[:2])
    # HH replies run past 64 tokens: each line ends as one error naming the first response refused.
    assert all(r["error"]["code"] == "too_long" for r in records), records
    assert records[0]["error"]["message"].startswith("chosen[0]: ")
    assert records[1]["error"]["message"].startswith("responses[0]: ")


def test_equal_responses_get_equal_scores_whatever_they_are_packed_with(tiny_model_dir) -> None:
    """The same conversation packed at different places among others came back a few 1e-7 apart:
    a line of equal responses had a best one, and its export a pair of the same reply. The engine
    scores each distinct conversation once."""
    engine = Scorer.load(str(tiny_model_dir))
    same = parse_object({"prompt": "p", "responses": ["same", "same", "same"]}, 2)
    others = parse_object({"prompt": "Name a prime.", "responses": ["7", "8", "Nine."]}, 1)
    records = score_items(engine, [others, same])  # type: ignore[list-item]
    assert len(set(records[1]["scores"])) == 1, records[1]
    assert records[1]["best"] == records[1]["worst"] == 0
