from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.batching import filled, pack


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=500), max_size=300),
    budget=st.integers(min_value=1, max_value=5000),
    cap=st.integers(min_value=1, max_value=64),
)
def test_pack_covers_every_item_once_within_budget(lengths, budget, cap):
    batches = pack(lengths, budget, cap)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= cap
        longest = max(lengths[i] for i in b)
        assert len(b) * longest <= budget or len(b) == 1


def test_sorted_neighbours_pad_little():
    lengths = [10, 300, 11, 299, 12, 298]
    assert pack(lengths, 600, 64) == [[1, 3], [5, 4], [2, 0]]
    assert pack(lengths, 10_000, 2) == [[1, 3], [5, 4], [2, 0]]


def test_filled_keeps_order_and_refuses_a_hole() -> None:
    assert filled([3, 0, 5]) == [3, 0, 5]  # a falsy result is a result
    with pytest.raises(RuntimeError, match="1 of 3 results were never filled in"):
        filled([1, None, 2])
