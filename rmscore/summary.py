"""Tallies for a run or a job: counts, and preference accuracy per subset and overall."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    total: int = 0
    scored: int = 0
    failed: int = 0
    truncated: int = 0
    listwise: bool = False  # a listwise line was scored: accuracy is RewardBench 2 credit, not pairs
    errors_by_code: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Pairs ranked right; a listwise line adds its RewardBench 2 credit (a fraction when tied at the top).
    _right: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _pairs: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, record: dict[str, Any]) -> None:
        self.total += 1
        if "error" in record:
            self.failed += 1
            self.errors_by_code[record["error"]["code"]] += 1
            return
        self.scored += 1
        self.truncated += bool(record.get("truncated"))
        self.listwise = self.listwise or "scores" in record
        if "correct" in record:
            subset = record.get("subset") or "all"
            self._pairs[subset] += 1
            self._right[subset] += float(record["correct"])

    @property
    def accuracy(self) -> dict[str, Any] | None:
        """`{"overall": acc, "n": pairs, "subsets": {name: {"accuracy", "n"}}}`, None for chat runs."""
        return accuracy_summary({s: (self._right[s], n) for s, n in self._pairs.items()})


def accuracy_summary(per_subset: dict[str, tuple[float, int]]) -> dict[str, Any] | None:
    """From {subset: (correct, pairs)}; overall is over all pairs, not a mean of subsets."""
    pairs = sum(n for _, n in per_subset.values())
    if not pairs:
        return None
    right = sum(r for r, _ in per_subset.values())
    return {
        "overall": right / pairs,
        "n": pairs,
        "subsets": {s: {"accuracy": r / n, "n": n} for s, (r, n) in sorted(per_subset.items()) if n},
    }
