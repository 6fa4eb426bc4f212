"""Tokens/s over the last minute, as the worker's stats and metrics report it (explicit clock)."""

from __future__ import annotations

from worker.monitoring import Throughput


def test_the_rate_spans_the_last_window_only() -> None:
    counter = {"tokens": 0}
    t = Throughput(lambda: counter["tokens"], window=60)
    t.sample(now=0)
    for second in range(1, 121):
        # 100 tokens/s for the first minute, then 10 tokens/s
        counter["tokens"] += 100 if second <= 60 else 10
        t.sample(now=second)
    assert t.rate(now=120) == 10
    assert t.rate(now=180) == 0  # a minute without tokens


def test_the_rate_before_a_full_window_covers_the_time_so_far() -> None:
    counter = {"tokens": 0}
    t = Throughput(lambda: counter["tokens"], window=60)
    t.sample(now=0)
    counter["tokens"] = 300
    assert t.rate(now=10) == 30


def test_an_idle_counter_has_no_rate() -> None:
    t = Throughput(lambda: 5, window=60)
    t.sample(now=0)
    assert t.rate(now=30) == 0.0
