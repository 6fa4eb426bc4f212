"""Pack items into micro-batches under a token budget. Pure logic: no torch, easy to test.

Sorting by length before packing is what makes batching pay: neighbours have nearly equal
lengths, so right-padding wastes almost nothing, and each batch holds as many items as the
budget (batch size x longest sequence) allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def pack(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Return batches of indices into `lengths`, longest batches first.

    Each batch satisfies len(batch) * max(lengths in batch) <= max_batch_tokens, except a single
    item longer than the whole budget, which gets a batch of its own.
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be positive")
    # Longest first: the most memory-hungry batch runs first, so an out-of-memory shows up at once.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * max(longest, n) > max_batch_tokens
        ):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def padded_tokens(batch_lengths: Sequence[int]) -> int:
    return len(batch_lengths) * max(batch_lengths) if batch_lengths else 0


def filled(slots: Sequence[T | None]) -> list[T]:
    """`slots` once every one holds its result: results are placed by position, out of order (the
    cache's first, batches longest first), and a slot left empty is a bug to fail on, not a None
    to hand on as a score."""
    out = [s for s in slots if s is not None]
    if len(out) != len(slots):
        raise RuntimeError(f"{len(slots) - len(out)} of {len(slots)} results were never filled in")
    return out
