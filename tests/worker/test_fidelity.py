"""The engine scores exactly as the model card's pipeline does, whatever the batching."""

from __future__ import annotations

import itertools

import pytest

from rmscore.formats import PairItem
from rmscore.inputs import iter_parsed
from worker import cpu_linear
from worker.engine import Scorer
from worker.scoring import score_items


@pytest.fixture(scope="module")
def items(shared_data) -> list[PairItem]:
    ebb = list(iter_parsed(shared_data / "evalbiasbench.json"))
    hh = list(itertools.islice(iter_parsed(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz"), 300))
    assert len(ebb) == 80 and len(hh) == 300
    assert all(isinstance(i, PairItem) for i in ebb + hh)
    return ebb + hh  # type: ignore[return-value]


@pytest.fixture(scope="module")
def reference(items, card_pipeline) -> list[float]:
    return card_pipeline([c for item in items for c in item.conversations])


@pytest.mark.parametrize(
    ("budget", "batch_size", "lanes", "packed"),
    [(16, 1, 1, True), (1024, 256, 2, True), (8192, 64, 2, True), (1024, 256, 1, False)],
    ids=["batch-size-1", "cpu-default", "large-budget", "plain-kernels-one-lane"],
)
def test_scores_match_card_pipeline(tiny_model_dir, items, reference, budget, batch_size, lanes, packed):
    engine = Scorer.load(
        str(tiny_model_dir), max_batch_tokens=budget, max_batch_size=batch_size, lanes=lanes, packed=packed
    )
    assert engine.lanes == lanes
    assert (engine.packed_linears > 0) == (packed and cpu_linear.available())
    records = score_items(engine, items)
    ours = [s for r in records for s in (r["chosen_score"], r["rejected_score"])]
    assert len(ours) == len(reference)
    worst = max(abs(a - b) for a, b in zip(ours, reference, strict=True))
    assert worst < 1e-4, f"max |engine - pipeline| = {worst}"
    # Results come back in input order, one per item.
    assert [r["line"] for r in records] == [i.line for i in items]
    if batch_size == 1:
        assert engine.stats.batches == 2 * len(items)
    else:
        assert engine.stats.batches < len(items)
        assert engine.stats.padding_efficiency > 0.95


def test_correct_is_strictly_greater(engine, monkeypatch):
    # Batches of one: two rows of one batch may differ in the last float bit (GEMM summation order
    # depends on a row's place in the matrix), and this test needs an exact tie.
    monkeypatch.setattr(engine, "max_batch_size", 1)
    conv = [{"role": "user", "content": "same"}, {"role": "assistant", "content": "same"}]
    [record] = score_items(engine, [PairItem(1, None, None, conv, conv)])
    assert record["chosen_score"] == record["rejected_score"]
    assert record["correct"] is False  # a tie is wrong, as in RewardBench
