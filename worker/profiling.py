"""RMSCORE_PROFILE=PATH: cProfile every stage of every chunk this process runs and write the stats to
PATH at exit (bench/system.py --profile reads it). Off by default: profiling slows the hot path.

A chunk's stages run on three threads (worker/chunk_pipeline.py) and cProfile sees one thread, so
each thread gets its own profiler; their stats are merged at exit.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import pstats
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
PATH = os.environ.get("RMSCORE_PROFILE")
_local = threading.local()
_profilers: list[cProfile.Profile] = []
_lock = threading.Lock()


def call(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)`, under this thread's profiler when profiling is on."""
    if PATH is None:
        return fn(*args, **kwargs)
    profiler: cProfile.Profile | None = getattr(_local, "profiler", None)
    if profiler is None:
        profiler = _local.profiler = cProfile.Profile()
        with _lock:
            _profilers.append(profiler)
    return profiler.runcall(fn, *args, **kwargs)


def _dump(path: str) -> None:
    with _lock:
        if not _profilers:
            return
        stats = pstats.Stats(_profilers[0])
        for profiler in _profilers[1:]:
            stats.add(profiler)
    stats.dump_stats(path)


if PATH:
    atexit.register(_dump, PATH)
