"""Storing a job streams: memory does not grow with the number of lines."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator

from sqlalchemy import Engine

from db.jobs import create_job
from rmscore.formats import Parsed, parse_line


def lines(n: int) -> Iterator[Parsed]:
    for i in range(1, n + 1):
        raw = json.dumps({"custom_id": f"id-{i}", "prompt": f"question {i} " * 8, "response": "an answer " * 20})
        yield parse_line(raw, i, "chat")


def peak_bytes(db: Engine, n: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        create_job(db, lines(n), model="tiny", chunk_size=64)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_input_grows(sqlite_db: Engine) -> None:
    peak_bytes(sqlite_db, 1_000)  # warm caches (compiled statements, pools)
    small = peak_bytes(sqlite_db, 2_000)
    large = peak_bytes(sqlite_db, 12_000)
    # 6x the lines: the peak may grow by a few chunk boundaries, not 6x (nor 2x).
    assert large < 1.5 * small, (small, large)
