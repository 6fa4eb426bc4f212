"""Whose fault a failure is (worker/blame.py), and what poison bisection does with each kind.

The infrastructure errors here are real ones: SQLAlchemy's OperationalError from connecting to a
port nobody listens on, redis-py's ConnectionError from the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis
from harness import free_port
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from db.chunks import SCORING_FAILED
from rmscore.formats import Item, parse_object
from worker.blame import is_infrastructure
from worker.poison import bisect_scores


def database_down() -> OperationalError:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a closed port answered")


def broker_down() -> redis.ConnectionError:
    try:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    except redis.ConnectionError as exc:
        return exc
    raise AssertionError("a closed port answered")


def items(n: int) -> list[Item]:
    return [parse_object({"custom_id": f"c{i}", "prompt": "q", "response": "a"}, i) for i in range(1, n + 1)]  # type: ignore[misc]


def ok(part: Sequence[Item]) -> list[dict[str, Any]]:
    return [{"line": it.line, "custom_id": it.custom_id, "score": 1.0} for it in part]


def test_outages_are_the_infrastructures_fault() -> None:
    assert is_infrastructure(database_down())
    assert is_infrastructure(broker_down())
    assert is_infrastructure(ConnectionRefusedError("refused"))
    try:
        raise RuntimeError("could not load the chunk") from database_down()
    except RuntimeError as wrapped:
        assert is_infrastructure(wrapped)


def test_an_items_own_failures_are_not() -> None:
    assert not is_infrastructure(ValueError("bad input"))
    assert not is_infrastructure(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_infrastructure(IntegrityError("INSERT", {}, Exception("duplicate key")))
    try:
        try:
            raise database_down()
        except OperationalError:
            raise ValueError("the item") from None  # raised while handling an outage, but its own
    except ValueError as own:
        assert not is_infrastructure(own)


def test_bisection_marks_only_the_item_that_raises() -> None:
    def score(part: Sequence[Item]) -> list[dict[str, Any]]:
        if any(it.custom_id == "c3" for it in part):
            raise ValueError("c3 chokes the model")
        return ok(part)

    out = bisect_scores(score, items(4))
    assert [r.get("error", {}).get("code") for r in out] == [None, None, SCORING_FAILED, None]


def test_an_outage_during_bisection_stops_it_and_marks_nothing() -> None:
    calls: list[int] = []

    def score(part: Sequence[Item]) -> list[dict[str, Any]]:
        calls.append(len(part))
        raise database_down()  # every part fails alike: the database is down, not the items

    with pytest.raises(OperationalError):
        bisect_scores(score, items(8), first_error=ValueError("first try"))
    assert calls == [4]  # stopped at the first outage, nothing was marked
    with pytest.raises(OperationalError):
        bisect_scores(ok, items(8), first_error=database_down())
