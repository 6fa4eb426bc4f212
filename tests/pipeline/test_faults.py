"""Faults a fleet meets: two workers on one job, a worker killed mid-chunk, a Redis that lost its
data, a graceful stop, a cancel mid-job. Each ends with every line scored exactly once (or, for a
cancel, with what was scored kept and nothing more run).

These workers serve the `tiny-faults` queue; a delay after each claim (fault injection) makes
sure kills, stops and cancels land while a chunk is in hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import WorkerProc
from pipekit import FAULTS_MODEL, Pipeline
from testkit import run_cli, wait_until

from rmscore import keys
from worker.faults import CHUNK_DELAY_ENV

N_PAIRS = 60  # the first 60 HH-RLHF pairs: their reference is the first 60 lines of hh500's


@pytest.fixture
def hh60(inputs: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "hh60.jsonl"
    path.write_text("".join(inputs["hh"].read_text().splitlines(keepends=True)[:N_PAIRS]))
    return path


@pytest.fixture
def reference60(references: dict[str, Any]) -> list[dict[str, Any]]:
    return references["hh"][:N_PAIRS]


def faults_worker(
    start_worker: Callable[..., WorkerProc], pipeline: Pipeline, name: str, delay: float = 0.0
) -> WorkerProc:
    env = pipeline.worker_env(**{CHUNK_DELAY_ENV: str(delay)})
    return start_worker(env, f"{FAULTS_MODEL}@{name}", ["--model", str(pipeline.faults_model_dir)])


def leased_by(pipeline: Pipeline, job_id: str, worker: WorkerProc) -> Any:
    """The chunk `worker` holds right now, if any."""
    for c in pipeline.chunks(job_id):
        if c.status == "leased" and (c.lease_owner or "").startswith(worker.name + "/"):
            return c
    return None


def owners(pipeline: Pipeline, job_id: str) -> set[str]:
    return {c.lease_owner.rsplit("/", 1)[0] for c in pipeline.chunks(job_id) if c.status == "done"}


@pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)
def test_two_workers_share_a_job(
    pipeline: Pipeline, start_worker: Any, hh60: Path, reference60: list[dict[str, Any]]
) -> None:
    a = faults_worker(start_worker, pipeline, "share-a", delay=0.3)
    b = faults_worker(start_worker, pipeline, "share-b", delay=0.3)
    a.wait_ready(pipeline.redis)
    b.wait_ready(pipeline.redis)
    job_id = pipeline.submit(hh60, model=FAULTS_MODEL, chunk_size=3)  # 20 chunks
    pipeline.wait(job_id, timeout=120)
    pipeline.assert_exactly_once(job_id, reference60)
    assert owners(pipeline, job_id) == {a.name, b.name}
    assert all(c.attempts == 1 for c in pipeline.chunks(job_id))


@pytest.mark.parametrize("pipeline", ["sqlite", "postgresql"], indirect=True)
def test_a_worker_killed_mid_chunk_delays_the_job_but_loses_nothing(
    pipeline: Pipeline, start_worker: Any, hh60: Path, reference60: list[dict[str, Any]]
) -> None:
    doomed = faults_worker(start_worker, pipeline, "doomed", delay=30).wait_ready(pipeline.redis)
    job_id = pipeline.submit(hh60, model=FAULTS_MODEL, chunk_size=6)  # 10 chunks
    held = wait_until(lambda: leased_by(pipeline, job_id, doomed), 60, "the doomed worker to take a chunk")
    doomed.kill()
    # Killed mid-chunk: its lease is still there, and nothing of that chunk was stored.
    assert leased_by(pipeline, job_id, doomed).id == held.id
    assert pipeline.job(job_id).completed == 0

    rescuer = faults_worker(start_worker, pipeline, "rescuer").wait_ready(pipeline.redis)
    pipeline.wait(job_id, timeout=120)
    pipeline.assert_exactly_once(job_id, reference60)
    assert owners(pipeline, job_id) == {rescuer.name}
    attempts = {c.id: c.attempts for c in pipeline.chunks(job_id)}
    assert attempts.pop(held.id) == 2  # leased by the dead worker, then re-queued once its lease expired
    assert set(attempts.values()) == {1}


@pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)
def test_redis_losing_its_data_mid_job_delays_the_job_but_loses_nothing(
    pipeline: Pipeline, start_worker: Any, hh60: Path, reference60: list[dict[str, Any]]
) -> None:
    w = faults_worker(start_worker, pipeline, "flushed", delay=0.5).wait_ready(pipeline.redis)
    job_id = pipeline.submit(hh60, model=FAULTS_MODEL, chunk_size=5)  # 12 chunks
    wait_until(lambda: pipeline.job(job_id).completed >= 10, 60, "two chunks done")
    queue = keys.score_queue(FAULTS_MODEL)
    assert pipeline.redis.llen(queue) > 0
    # Only this suite's database: FLUSHALL would wipe other suites' brokers too. Same effect here.
    pipeline.redis.flushdb()
    assert pipeline.redis.llen(queue) == 0
    pipeline.wait(job_id, timeout=120)
    pipeline.assert_exactly_once(job_id, reference60)
    assert w.alive()
    assert pipeline.redis.exists(keys.worker_heartbeat(w.name))  # the heartbeat came back too


@pytest.mark.parametrize("pipeline", ["postgresql"], indirect=True)
def test_sigterm_finishes_the_chunk_in_hand(pipeline: Pipeline, start_worker: Any, hh60: Path) -> None:
    w = faults_worker(start_worker, pipeline, "stopped", delay=3).wait_ready(pipeline.redis)
    job_id = pipeline.submit(hh60, model=FAULTS_MODEL, chunk_size=20)  # 3 chunks
    held = wait_until(lambda: leased_by(pipeline, job_id, w), 60, "the worker to take a chunk")
    assert w.stop(timeout=60) == 0
    chunks = {c.id: c for c in pipeline.chunks(job_id)}
    assert chunks[held.id].status == "done"  # finished, not abandoned
    assert sorted(c.status for c in chunks.values()) == ["done", "queued", "queued"]
    assert pipeline.job(job_id).completed == 20
    assert not pipeline.redis.exists(keys.worker_heartbeat(w.name))
    run_cli(["cancel", job_id], pipeline.env)


@pytest.mark.parametrize("pipeline", ["postgresql"], indirect=True)
def test_cancel_mid_job_keeps_what_was_scored_and_runs_nothing_more(
    pipeline: Pipeline, start_worker: Any, hh60: Path, reference60: list[dict[str, Any]]
) -> None:
    w = faults_worker(start_worker, pipeline, "cancelled", delay=1).wait_ready(pipeline.redis)
    job_id = pipeline.submit(hh60, model=FAULTS_MODEL, chunk_size=6)  # 10 chunks
    wait_until(
        lambda: pipeline.job(job_id).completed >= 6 and leased_by(pipeline, job_id, w),
        60,
        "one chunk done and the next in hand",
    )
    out = run_cli(["cancel", job_id], pipeline.env)
    assert out.stdout.strip() in ("cancelling", "cancelled")
    job = pipeline.wait(job_id, until=("cancelled",), timeout=60)
    assert job.cancelled_at is not None and job.completed_at is None
    done = [c for c in pipeline.chunks(job_id) if c.status == "done"]
    assert 1 <= len(done) < 10
    assert {c.status for c in pipeline.chunks(job_id)} == {"done", "cancelled"}
    # Scored lines are kept and equal the reference; the rest are reported as cancelled.
    records = pipeline.records(job_id)
    scored = [r for r in records if "error" not in r]
    assert len(scored) == job.completed == 6 * len(done)
    by_line = {r["line"]: r for r in reference60}
    for r in scored:
        assert abs(r["chosen_score"] - by_line[r["line"]]["chosen_score"]) <= 1e-4
    assert {r["error"]["code"] for r in records if "error" in r} == {"cancelled"}
    assert len(records) == N_PAIRS

    # Nothing more runs: the worker drains the job's remaining messages, running none of them.
    queue = keys.score_queue(FAULTS_MODEL)

    def not_run() -> int:
        out = w.output()
        return out.count(": skipped (") + out.count(": not run, its job was cancelled")

    wait_until(
        lambda: pipeline.redis.llen(queue) == 0 and not_run() >= 10 - len(done),
        60,
        "the worker to skip the cancelled chunks",
    )
    time.sleep(1)
    assert pipeline.job(job_id).completed == job.completed
    assert {c.status for c in pipeline.chunks(job_id)} == {"done", "cancelled"}
    assert w.alive() and "lease lost" not in w.output()
