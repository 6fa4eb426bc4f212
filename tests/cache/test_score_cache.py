"""The score cache across jobs: a second job with the same conversations takes every score from the
cache (identical, flagged `cached`, no model work), and `cache=false` rescores them on the model.

Real Redis (db 7), a real SQLite file, one real `rmscore worker` on the tiny model. Model work is
read from the worker's heartbeat: `engine_items` (conversations through the model) and
`cache_hits` (conversations answered from the cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import WorkerProc, migrated, service_env, start_worker_proc
from sqlalchemy import select
from testkit import REDIS_URL, run_cli, wait_until

BROKER = f"{REDIS_URL}/7"
PAIRS = 12
CHUNK = 5  # 3 chunks: the cache is consulted per chunk


def pairs(tag: str) -> list[dict[str, Any]]:
    """The same conversations whatever `tag` (custom ids differ: the cache keys on content only)."""
    out: list[dict[str, Any]] = []
    for i in range(PAIRS):
        out.append(
            {
                "custom_id": f"{tag}-{i}",
                "subset": "alpacaeval-easy" if i % 2 else "llmbar-natural",
                "prompt": f"Question {i}: how do I keep basil alive?",
                "chosen": f"Water it when the soil is dry ({i}).",
                "rejected": f"Basil {i} cannot be kept.",
            }
        )
    out.append({"custom_id": f"{tag}-bad", "chosen": "no rejected side"})  # an error line, never cached
    return out


class Stack:
    """A SQLite file and a Redis database for `rmscore worker` processes on `model_dir` (also used by
    tests/cache/test_cache_trust.py, on its own Redis database)."""

    def __init__(self, tmp: Path, model_dir: Path, broker: str = BROKER) -> None:
        import redis

        from rmscore.settings import Settings

        self.tmp, self.model_dir = tmp, model_dir
        self.db_url = f"sqlite:///{tmp / 'cache.db'}"
        self.redis = redis.Redis.from_url(broker)
        self.redis.flushdb()
        self.settings = Settings(database_url=self.db_url, broker_url=broker, model=str(model_dir), _env_file=None)
        self.db = migrated(self.db_url)
        self.env = service_env(self.db_url, broker, model_dir, RMSCORE_HEARTBEAT_INTERVAL="0.5")
        self.chunks_seen = 0

    def start_worker(self, name: str, **env: str) -> WorkerProc:
        """A fresh worker process (its heartbeat counts from zero again)."""
        self.chunks_seen = 0
        w = start_worker_proc({**self.env, **env}, name, self.tmp / f"{name}.log", ["--model", str(self.model_dir)])
        return w.wait_ready(self.redis)

    def run_job(self, worker: WorkerProc, tag: str, tenant: str = "local", **options: Any) -> str:
        from db.chunks import chunk_counts
        from db.jobs import get_job
        from db.producer import submit

        job_id = submit(
            iter_parsed_items(pairs(tag)),
            kind="pairwise",
            tenant=tenant,
            chunk_size=CHUNK,
            options=options or None,
            settings=self.settings,
            db=self.db,
        ).job.id
        wait_until(lambda: get_job(self.db, job_id).terminal, 120, f"job {job_id}", 0.2)
        assert get_job(self.db, job_id).status == "completed"
        self.chunks_seen += chunk_counts(self.db, job_id)["done"]
        # The heartbeat is written after each beat interval: wait for the one that counts this job.
        self.beat = wait_until(
            lambda: (hb := self.heartbeat(worker))["chunks_done"] == self.chunks_seen and hb,
            30,
            "the heartbeat to count the job's chunks",
        )
        return job_id

    def heartbeat(self, worker: WorkerProc) -> dict[str, Any]:
        from rmscore import keys

        raw = self.redis.get(keys.worker_heartbeat(worker.name))
        return json.loads(raw) if raw else {"chunks_done": -1}

    def rows(self, job_id: str) -> list[Any]:
        from db.models import results
        from db.session import reading

        with reading(self.db) as conn:
            return list(conn.execute(select(results).where(results.c.job_id == job_id).order_by(results.c.line)).all())


def iter_parsed_items(objs: list[dict[str, Any]]) -> Iterator[Any]:
    from rmscore.formats import parse_object

    for line, obj in enumerate(objs, 1):
        yield parse_object(obj, line, "pairwise")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Stack, WorkerProc]]:
    tmp = tmp_path_factory.mktemp("cache")
    s = Stack(tmp, tiny_model_dir)
    w = start_worker_proc(s.env, "tiny@cache-test", tmp / "worker.log", ["--model", str(tiny_model_dir)])
    try:
        yield s, w.wait_ready(s.redis)
    finally:
        w.stop()
        s.redis.flushdb()


def test_second_job_takes_every_score_from_the_cache_and_cache_false_rescores(stack: tuple[Stack, WorkerProc]) -> None:
    s, worker = stack
    first = s.run_job(worker, "a")
    after_first = s.beat
    first_rows = s.rows(first)
    scored = [r for r in first_rows if r.error_code is None]
    assert len(scored) == PAIRS and all(r.cached is False for r in scored)
    assert after_first["cache_hits"] == 0

    second = s.run_job(worker, "b")
    after_second = s.beat
    second_rows = s.rows(second)
    # Identical scores, each flagged as taken from the cache, and the model saw nothing new.
    assert [(r.line, r.chosen_score, r.rejected_score, r.truncated) for r in second_rows] == [
        (r.line, r.chosen_score, r.rejected_score, r.truncated) for r in first_rows
    ]
    assert [r.cached for r in second_rows if r.error_code is None] == [True] * PAIRS
    assert second_rows[-1].error_code is not None
    assert second_rows[-1].cached is None  # an error line: nothing came from the cache
    assert after_second["engine_items"] == after_first["engine_items"]
    assert after_second["cache_hits"] == 2 * PAIRS
    # `rmscore results` (local: the database directly) says so in JSONL and in Parquet.
    from rmscore.parquet import read_table

    for job_id, want in ((first, False), (second, True)):
        out = s.tmp / f"{job_id}.jsonl"
        run_cli(["results", job_id, "-o", str(out)], s.env)
        assert [json.loads(x).get("cached") for x in out.read_text().splitlines()] == [want] * PAIRS + [None]
        run_cli(["results", job_id, "-o", str(out.with_suffix(".parquet"))], s.env)
        assert [r["cached"] for r in read_table(out.with_suffix(".parquet"))] == [want] * PAIRS + [None]

    third = s.run_job(worker, "c", cache=False)
    after_third = s.beat
    third_rows = s.rows(third)
    assert all(r.cached is False for r in third_rows if r.error_code is None)
    assert after_third["engine_items"] == after_first["engine_items"] + 2 * PAIRS
    assert after_third["cache_hits"] == 2 * PAIRS
    for a, c in zip(first_rows[:-1], third_rows[:-1], strict=True):
        assert c.chosen_score == pytest.approx(a.chosen_score, abs=1e-5)
        assert c.rejected_score == pytest.approx(a.rejected_score, abs=1e-5)


def test_summary_carries_the_evaluation_and_options_validate(stack: tuple[Stack, WorkerProc]) -> None:
    from db.jobs import check_options, job_summary, list_jobs
    from rmscore.errors import BadRequest

    s, _ = stack
    page, _ = list_jobs(s.db, limit=1)
    summary = job_summary(s.db, page[0].id)
    ev = summary["evaluation"]
    assert ev["overall"]["n"] == summary["accuracy"]["n"] == PAIRS
    assert {row["subset"] for row in ev["subsets"]} == {"alpacaeval-easy", "llmbar-natural"}
    assert ev["rewardbench"] is not None  # RewardBench subsets: the section table applies
    assert check_options({"cache": False}) == {"cache": False}
    with pytest.raises(BadRequest):
        check_options({"cache": "no"})
