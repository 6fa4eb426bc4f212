"""The worker's middleware chain (worker/middleware.py): hook order, `recover`'s first answer, and
the list built at start-up (the profiler only under RMSCORE_PROFILE)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from rmscore.formats import Item
from worker import middleware, profiling
from worker.middleware import Chain, Middleware, Rescore

R = TypeVar("R")


class Recorder(Middleware):
    def __init__(self, name: str, log: list[str], answer: list[dict[str, Any]] | None = None) -> None:
        self.name, self.log, self.answer = name, log, answer

    def stage(self, call: Callable[[], R]) -> R:
        self.log.append(f"{self.name} in")
        try:
            return call()
        finally:
            self.log.append(f"{self.name} out")

    def before_score(self, items: Sequence[Item]) -> None:
        self.log.append(f"{self.name} before_score")

    def recover(self, chunk: Any, error: Exception, rescore: Rescore) -> list[dict[str, Any]] | None:
        self.log.append(f"{self.name} recover")
        return self.answer


def test_stages_nest_with_the_first_middleware_outermost_and_hooks_run_in_order() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log)])
    assert chain.stage(lambda x: log.append(f"stage {x}") or x, 7) == 7
    chain.before_score([])
    assert log == ["a in", "b in", "stage 7", "b out", "a out", "a before_score", "b before_score"]


def test_recover_takes_the_first_answer() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log, [{"line": 0}]), Recorder("c", log, [])])
    assert chain.recover(None, RuntimeError("x"), lambda items: []) == [{"line": 0}]
    assert log == ["a recover", "b recover"]
    assert Chain([Recorder("a", [])]).recover(None, RuntimeError("x"), lambda items: []) is None


@pytest.mark.parametrize("profile", [None, "/tmp/profile.out"])
def test_the_profiler_is_in_the_chain_only_when_profiling(monkeypatch: pytest.MonkeyPatch, profile: str | None) -> None:
    monkeypatch.setattr(profiling, "PATH", profile)
    chain = middleware.build(object(), None, cache_scope="tenant", max_attempts=3)  # type: ignore[arg-type]
    kinds = [type(m) for m in chain.middleware]
    assert kinds[-3:] == [middleware.Faults, middleware.ScoreCache, middleware.PoisonBisection]
    assert (middleware.Profiler in kinds) == (profile is not None)
    assert chain.cache_hits() == 0
