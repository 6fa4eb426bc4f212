"""Fixtures of the hostile-input suite: one stack per backend with DEFAULT limits, and the summary."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import migrated, service_env, start_api, start_worker_proc, stop_proc
from hostilekit import Hostile
from testkit import redis_url

TENANTS = ("alice", "bob", "carol")
_summaries: list[dict[str, Any]] = []


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hostile(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    pg_schema_url: Callable[[str], str],
) -> Iterator[Hostile]:
    import redis

    from db.api_keys import create_key

    backend = request.param
    tmp = tmp_path_factory.mktemp(f"hostile-{backend}")
    db_url = f"sqlite:///{tmp / 'rmscore.db'}" if backend == "sqlite" else pg_schema_url("rmscore_hostile")
    broker = redis_url(f"hostile-{backend}")
    redis.Redis.from_url(broker).flushdb()
    db = migrated(db_url)
    keys = {t: create_key(db, t)[0] for t in TENANTS}
    api_tmp = tmp / "api-tmp"
    api_tmp.mkdir()
    # Where things are, and nothing else: every limit is the default a user runs.
    env = service_env(db_url, broker, tiny_model_dir, TMPDIR=str(api_tmp))
    worker = start_worker_proc(env, "tiny@hostile", tmp / "worker.log", ["--model", str(tiny_model_dir)])
    url, api = start_api(env, tmp / "api.log")
    h = Hostile(backend, url, api, api_tmp, keys, db_url)
    try:
        worker.wait_ready(redis.Redis.from_url(broker))
        yield h
    finally:
        _summaries.append(h.summary())  # while the API lives: its peak RSS is read from /proc
        stop_proc(api)
        worker.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _summaries:
        return
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    out = os.environ.get("RMSCORE_HOSTILE_REPORT") or str(Path(base) / "hostile.json")
    Path(out).write_text(json.dumps(_summaries, indent=2))
    brief = [{k: v for k, v in s.items() if k != "attempts"} | {"attempts": len(s["attempts"])} for s in _summaries]
    text = f"hostile-input summary (every attempt in {out}):\n{json.dumps(brief, indent=2)}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)
    else:
        print(text)
